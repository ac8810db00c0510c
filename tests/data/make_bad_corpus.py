"""Write the bad-input corpus of tests/data/bad/: small files that every command reading images,
masks or configs must handle as documented (README, "Beyond one machine, and nothing lost").

    python tests/data/make_bad_corpus.py [FOLDER]     # default: tests/data/bad

Deterministic: the same Pillow writes the same bytes. Two cases are made at test time instead
(tests/test_bad_inputs.py): a file name that is not valid UTF-8 (not committed: git and many
tools mangle such names) and the model directories with a missing or tampered config.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

# name -> (what it is, whether images.read_image reads it)
CORPUS = {
    "zero_bytes.png": ("an empty file", False),
    "truncated.jpg": ("the first half of a JPEG", False),
    "text_named.png": ("a text file named .png", False),
    "one_pixel.png": ("a 1x1 image", False),
    "huge_header.png": ("a PNG whose header claims 30000x30000 pixels", False),
    "deep_16bit.png": ("16-bit greyscale PNG", True),
    "deep_16bit_rgb.png": ("16-bit RGB PNG", True),
    "cmyk.jpg": ("a CMYK JPEG", True),
    "palette_transparent.png": ("a palette PNG with a transparent colour", True),
    "exif_rotated.jpg": ("a 32x16 JPEG whose EXIF orientation (6) shows it 16x32", True),
}
MASK_WRONG_SIZE = "mask_7x7.png"  # a mask that fits no model or image size here
WRONG_TYPE_CONFIG = "wrong_type.toml"  # [train] epochs = "three"
NO_IMAGES_DIR = "no_images"  # a folder with a file in it but no image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: `rows` is the filtered scanline data (each row led by filter 0).
    Lets the header say anything (a size no image has, 16-bit RGB that Pillow cannot write)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(rows, 9)) + _png_chunk(b"IEND", b""))


def _face(w: int, h: int, seed: int = 0) -> np.ndarray:
    low = np.random.default_rng(seed).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BILINEAR))


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def corpus_bytes() -> dict[str, bytes]:
    """Every file of the corpus: relative name -> content."""
    files: dict[str, bytes] = {}
    files["zero_bytes.png"] = b""
    jpeg = _save(Image.fromarray(_face(32, 32, 1)), "JPEG", quality=90)
    files["truncated.jpg"] = jpeg[: len(jpeg) // 2]
    files["text_named.png"] = b"this is a text file, not an image\n"
    files["one_pixel.png"] = _save(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG")
    # 30000 x 30000 RGB in the header, three rows of data: readers must refuse it from the
    # header alone instead of allocating 2.7 GB.
    files["huge_header.png"] = png_bytes(30000, 30000, 8, 2, (b"\x00" + bytes(90000)) * 3)
    ramp = (np.linspace(0, 65535, 24 * 24).reshape(24, 24)).astype(np.uint16)
    files["deep_16bit.png"] = _save(Image.fromarray(ramp), "PNG")
    rgb16 = np.stack([ramp, ramp[::-1], ramp.T], axis=-1).astype(">u2")  # PNG is big-endian
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    files["deep_16bit_rgb.png"] = png_bytes(24, 24, 16, 2, rows)
    files["cmyk.jpg"] = _save(Image.fromarray(_face(24, 24, 2)).convert("CMYK"), "JPEG",
                              quality=90)
    pal = Image.fromarray(_face(24, 24, 3)).quantize(16)
    files["palette_transparent.png"] = _save(pal, "PNG", transparency=0)
    rotated = np.zeros((16, 32, 3), np.uint8)
    rotated[:, :16] = (255, 0, 0)  # left half red in the stored pixels: the top once rotated
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    files["exif_rotated.jpg"] = _save(Image.fromarray(rotated), "JPEG", quality=95, exif=exif)
    files[MASK_WRONG_SIZE] = _save(Image.new("L", (7, 7), 255), "PNG")
    files[WRONG_TYPE_CONFIG] = b'[train]\nepochs = "three"   # a string where a number belongs\n'
    files[f"{NO_IMAGES_DIR}/notes.txt"] = b"a folder with no image in it\n"
    return files


def write_corpus(folder: Path) -> list[Path]:
    paths = []
    for name, data in corpus_bytes().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "bad"
    for p in write_corpus(target):
        print(p, p.stat().st_size)
