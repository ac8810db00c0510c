"""List or blank the CUDA fatbinary entries of a shared library (scripts/device/pack.sh).

    python scripts/device/fatbin.py LIB            # entries by kind and architecture
    python scripts/device/fatbin.py LIB --keep 90  # zero the machine code (ELF) of every other
                                                   # architecture, in place

TensorFlow 2.21's wheel carries its GPU kernels for sm_60, 70, 80, 89 and 90 and as compute_90
PTX (233 MB of libtensorflow_cc.so.2's 1.1 GB). A GPU loads only the entry of its own
architecture (or JIT-compiles the PTX), so for one kind of GPU the others can be zeroed, and zeros
compress to nothing: 151 MB of cubins in libtensorflow_cc.so.2 and 31 MB in
libtensorflow_framework.so.2 for an H100 (sm_90). The headers and offsets stay as they were. Not
yet tried on a GPU (docs/speed.md).
"""

from __future__ import annotations

import argparse
import collections
import mmap
import struct
import subprocess

FATBIN_MAGIC = 0xBA55ED50


def section(path: str, name: str = ".nv_fatbin") -> tuple[int, int]:
    """(file offset, size) of the ELF section `name`, read with readelf."""
    out = subprocess.run(["readelf", "-S", "-W", path], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        fields = line.replace("[ ", "[").split()
        if name in fields:
            i = fields.index("PROGBITS")
            return int(fields[i + 2], 16), int(fields[i + 3], 16)
    raise SystemExit(f"{path}: no {name} section")


def entries(buf, start: int, size: int):
    """(entry offset, header size, payload size, kind, sm) of each entry of every fatbinary
    wrapper in buf[start:start + size]. kind: 1 PTX, 2 ELF (a cubin)."""
    p, end_sec = start, start + size
    while p < end_sec - 16:
        magic, _version, header, fat_size = struct.unpack_from("<IHHQ", buf, p)
        if magic != FATBIN_MAGIC:
            p += 8  # wrappers are 8-byte aligned
            continue
        q, end = p + header, p + header + fat_size
        while q < end:
            kind, _ver, entry_header, payload = struct.unpack_from("<HHIQ", buf, q)
            sm = struct.unpack_from("<I", buf, q + 28)[0]
            yield q, entry_header, payload, kind, sm
            q += entry_header + payload
        p = end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("library")
    ap.add_argument("--keep", type=int, help="zero the ELF entries of every other sm")
    args = ap.parse_args()
    start, size = section(args.library)
    with open(args.library, "r+b" if args.keep else "rb") as fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_WRITE if args.keep else
                        mmap.ACCESS_READ)
        sizes, zeroed = collections.Counter(), 0
        for q, header, payload, kind, sm in list(entries(buf, start, size)):
            sizes["ptx" if kind == 1 else "elf" if kind == 2 else f"kind {kind}", sm] += payload
            if args.keep and kind == 2 and sm != args.keep:
                buf[q + header:q + header + payload] = bytes(payload)
                zeroed += payload
        buf.flush()
    for (kind, sm), n in sorted(sizes.items()):
        print(f"{kind} sm_{sm}: {n / 1e6:.1f} MB")
    if args.keep:
        print(f"zeroed {zeroed / 1e6:.1f} MB of machine code for other architectures")


if __name__ == "__main__":
    main()
