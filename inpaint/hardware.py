"""Which precision pays on this machine: bfloat16 where the hardware computes it, float32 elsewhere.

bfloat16 is fast only where the hardware has it: a GPU, or a CPU with AMX, and on some CPUs with
AVX512-BF16. Elsewhere TensorFlow emulates it, and it is far slower than float32. Measured with
`scripts/benchmark.py` on 2-core machines (docs/speed.md): on an AMD EPYC with AVX512-BF16, mixed
bfloat16 trained 1.7x faster than float32; on one with AVX2 and FMA only, it trained 9.2x slower
(29.6 s against 3.21 s a step) and searched 6.6x slower (7.90 s against 1.19 s); on an Intel Xeon
with AVX512-BF16 but no AMX, it trained 1.5x slower (2.29 s against 1.54 s) and its 2048^3
product ran at 151 GFLOP/s against float32's 225. `precision = "auto"` therefore picks bfloat16
only where `native_bfloat16()` finds it pays.

Detection reads the CPU's flags (Linux's /proc/cpuinfo): AMX (or a GPU) is taken as native, no
bfloat16 flag as emulated; AVX512-BF16 without AMX, or flags that cannot be read (another system),
are decided by timing bfloat16 against float32 matrix products once per process (about a second).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# flags that make bfloat16 fast without asking: AMX's tile units (1.2 TFLOP/s bf16 against 0.32
# float32 measured on a 2-core Xeon). AVX512-BF16 alone is fast on some CPUs and not on others.
BF16_FAST_FLAGS = ("amx_bf16",)
# bfloat16 counts as native when a timed product runs at least this fast relative to float32
# (emulated bfloat16 measured 6-9x slower; native 1.4-1.7x faster)
NATIVE_RATIO = 1.0
EMULATED_SLOWDOWN = "9x slower training and 6.6x slower search, measured on an AVX2-only CPU"


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags, or None where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _timed_ratio(n: int = 2048, rounds: int = 5) -> float:
    """Seconds of a bfloat16 n x n matrix product over those of a float32 one: the median of
    `rounds` ratios, each of one product of each kind run back to back, so that the load of other
    work on the machine weighs on both alike (at n = 1024 one-off medians ranged 0.7-1.4 on a
    loaded machine whose true ratio is 1.7; at 2048 they ranged 1.7-1.9)."""
    import tensorflow as tf

    def product(dtype):
        a = tf.cast(tf.random.stateless_normal((n, n), seed=[0, 1]), dtype)
        f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, a), tf.float32)))
        f().numpy()  # trace and warm up
        return f

    def seconds(f):
        t = time.perf_counter()
        f().numpy()
        return time.perf_counter() - t

    bf16, fp32 = product(tf.bfloat16), product(tf.float32)
    ratios = sorted(seconds(bf16) / max(seconds(fp32), 1e-9) for _ in range(rounds))
    return ratios[len(ratios) // 2]


@functools.cache
def native_bfloat16() -> tuple[bool, str]:
    """(whether bfloat16 is computed natively here, why we think so)."""
    if _has_gpu():
        return True, "a GPU"
    flags = cpu_flags()
    if flags is not None:
        if fast := [f for f in BF16_FAST_FLAGS if f in flags]:
            return True, f"a CPU with {fast[0]}"
        if not any(f in flags for f in BF16_CPU_FLAGS):
            return False, "a CPU without AVX512-BF16 or AMX"
        what = "a CPU with avx512_bf16 but no AMX"
    else:
        what = "a CPU whose flags could not be read"
    ratio = _timed_ratio()
    kind = "faster" if ratio <= NATIVE_RATIO else "slower"
    return ratio <= NATIVE_RATIO, (f"{what}; a timed bfloat16 product took {ratio:.1f}x the "
                                   f"float32 one ({kind})")


_WARNED: set[str] = set()
_TOLD: set[str] = set()


def resolve_precision(requested: str, *, training: bool) -> str:
    """The precision to run: "auto" becomes bfloat16 ("mixed_bfloat16" for training, "bfloat16"
    for the search) where `native_bfloat16()`, else "float32". An explicit bfloat16 on hardware
    that emulates it is kept, with one warning per process."""
    bf16 = "mixed_bfloat16" if training else "bfloat16"
    if requested == "auto":
        native, why = native_bfloat16()
        chosen = bf16 if native else "float32"
        if chosen not in _TOLD:  # once per process and choice, however many networks ask
            _TOLD.add(chosen)
            log.info("precision auto: %s on %s", chosen, why)
        return chosen
    if requested == bf16:
        native, why = native_bfloat16()
        if not native and requested not in _WARNED:
            _WARNED.add(requested)
            log.warning("%s on %s is emulated and slow (%s); float32 or 'auto' is faster here",
                        requested, why, EMULATED_SLOWDOWN)
    return requested
