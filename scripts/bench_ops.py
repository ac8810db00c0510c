"""What the building blocks of inpaint.ops / inpaint.layers cost, as ratios measured in one run.

    python scripts/bench_ops.py [--batch 64] [--rounds 7]

1. A deformable convolution (ConvOffset2D, then the convolution) against the plain convolution of
   the same shape, for the discriminator layers of the 64x64 DCGAN: forward, and forward + backward.
2. The 64x64 discriminator, forward + backward, with `model.deformable` = [], ["d_conv3"],
   ["d_conv1"].
3. The 64x64 generator with each `model.upsample` mode, forward + backward, against "deconv".
4. translate() of a batch of 64x64 faces, forward + backward to the shift, against one generator
   forward pass (what it adds to a completion step).

Everything is float32 and compiled with tf.function (no XLA). The candidates of one comparison are
timed in interleaved rounds and each ratio is a median over rounds, so a machine whose load drifts
(a training job beside it) still gives fair ratios; the absolute times are printed for context.
`bench_ops()` prints the tables and returns the numbers (for scripts/benchmark.py to call).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _timer(fn, *args):
    """A callable running `fn(*args)` to completion, compiled and warmed up."""
    import tensorflow as tf

    compiled = tf.function(fn)

    def run():
        out = compiled(*args)
        tf.nest.map_structure(lambda t: t.numpy(), out)  # wait for the result

    run()
    run()
    return run


def _interleaved(runs: dict, rounds: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each callable in `runs`, one list entry per round, candidates taking
    turns within each round."""
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            for _ in range(repeats):
                run()
            times[name].append((time.perf_counter() - t0) / repeats)
    return times


def _ratios(times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    import numpy as np

    base = np.array(times[baseline])
    return {name: float(np.median(np.array(t) / base)) for name, t in times.items()}


def _median_ms(times: dict[str, list[float]]) -> dict[str, float]:
    import numpy as np

    return {name: float(np.median(t) * 1e3) for name, t in times.items()}


def _conv_runs(x, cout: int) -> dict:
    """Timers of a 5x5 stride-2 conv of x, plain and deformable, forward and forward + backward."""
    import keras
    import tensorflow as tf

    from inpaint.layers import ConvOffset2D

    conv = keras.layers.Conv2D(cout, 5, strides=2, padding="same")
    offset = ConvOffset2D()
    conv.build(x.shape)
    offset.build(x.shape)

    def fwd(x, deformable):
        return conv(offset(x) if deformable else x)

    def train(x, deformable):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(fwd(x, deformable)))
        weights = conv.trainable_weights + (offset.trainable_weights if deformable else [])
        return tape.gradient(loss, weights)

    return {"plain fwd": _timer(fwd, x, False), "deformable fwd": _timer(fwd, x, True),
            "plain train": _timer(train, x, False), "deformable train": _timer(train, x, True)}


def bench_deformable(batch: int, rounds: int, repeats: int) -> list[dict]:
    """Deformable vs plain 5x5 stride-2 convolution at the shapes of dcgan64's d_conv1..d_conv3."""
    import numpy as np
    import tensorflow as tf

    results = []
    for name, size, cin, cout in (("d_conv1", 32, 64, 128), ("d_conv2", 16, 128, 256),
                                  ("d_conv3", 8, 256, 512)):
        x = tf.constant(np.random.default_rng(0).normal(size=(batch, size, size, cin)), tf.float32)
        runs = _conv_runs(x, cout)
        times = _interleaved(runs, rounds, repeats)
        ms = _median_ms(times)
        results.append({
            "layer": name, "input": f"{batch}x{size}x{size}x{cin}", "ms": ms,
            "forward_ratio": _ratios({k: times[k] for k in ("plain fwd", "deformable fwd")},
                                     "plain fwd")["deformable fwd"],
            "train_ratio": _ratios({k: times[k] for k in ("plain train", "deformable train")},
                                   "plain train")["deformable train"],
        })
    return results


def bench_discriminator(batch: int, rounds: int, repeats: int) -> dict:
    """The dcgan64 discriminator, forward + backward, with and without deformable layers."""
    import numpy as np
    import tensorflow as tf

    from inpaint.config import Config
    from inpaint.models import build_discriminator

    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch, 64, 64, 3)), tf.float32)
    runs = {}
    for layers in ([], ["d_conv3"], ["d_conv1"]):
        cfg = Config().model
        cfg.deformable = layers
        d = build_discriminator(cfg)

        def train(x, d=d):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(d(x, training=True))
            return tape.gradient(loss, d.trainable_weights)

        runs[",".join(layers) or "none"] = _timer(train, x)
    times = _interleaved(runs, rounds, repeats)
    return {"ms": _median_ms(times), "ratio": _ratios(times, "none")}


def bench_upsample(batch: int, rounds: int, repeats: int) -> dict:
    """The dcgan64 generator, forward + backward, per upsample mode."""
    import numpy as np
    import tensorflow as tf

    from inpaint.config import Config
    from inpaint.models import build_generator

    z = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch, 100)), tf.float32)
    runs = {}
    for mode in ("deconv", "deconv-bilinear", "resize-conv"):
        cfg = Config().model
        cfg.upsample = mode
        g = build_generator(cfg)

        def train(z, g=g):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(g(z, training=True)))
            return tape.gradient(loss, g.trainable_weights)

        runs[mode] = _timer(train, z)
    times = _interleaved(runs, rounds, repeats)
    return {"ms": _median_ms(times), "ratio": _ratios(times, "deconv")}


def bench_translate(batch: int, rounds: int, repeats: int) -> dict:
    """translate() with its gradient to the shift, against one forward pass of the generator."""
    import numpy as np
    import tensorflow as tf

    from inpaint.config import Config
    from inpaint.models import build_generator
    from inpaint.ops import translate

    rng = np.random.default_rng(0)
    g = build_generator(Config().model)
    z = tf.constant(rng.uniform(-1, 1, (batch, 100)), tf.float32)
    images = tf.constant(rng.uniform(-1, 1, (batch, 64, 64, 3)), tf.float32)
    shifts = tf.constant(rng.uniform(-4, 4, (batch, 2)), tf.float32)

    def shift_grad(images, shifts, interpolation):
        with tf.GradientTape() as tape:
            tape.watch(shifts)
            loss = tf.reduce_sum(tf.square(translate(images, shifts, interpolation)))
        return tape.gradient(loss, shifts)

    runs = {"generator fwd": _timer(lambda z: g(z, training=False), z),
            "translate bilinear": _timer(shift_grad, images, shifts, "bilinear"),
            "translate nearest": _timer(shift_grad, images, shifts, "nearest")}
    times = _interleaved(runs, rounds, repeats)
    return {"ms": _median_ms(times), "ratio": _ratios(times, "generator fwd")}


def bench_ops(batch: int = 64, rounds: int = 7, repeats: int = 3) -> dict:
    """Run the four comparisons and print their ratios; returns them too."""
    import tensorflow as tf

    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"inpaint ops benchmark: float32, tf.function without XLA, batch {batch}, {device}, "
          f"median of {rounds} interleaved rounds of {repeats}")

    deform = bench_deformable(batch, rounds, repeats)
    print("\nDeformable convolution (ConvOffset2D + 5x5/2 conv) vs the plain 5x5/2 conv")
    print(f"{'layer':8} {'input':>16} {'plain ms':>9} {'deform ms':>10} {'fwd x':>6} "
          f"{'train ms':>9} {'deform ms':>10} {'train x':>8}")
    for r in deform:
        ms = r["ms"]
        print(f"{r['layer']:8} {r['input']:>16} {ms['plain fwd']:9.1f} {ms['deformable fwd']:10.1f} "
              f"{r['forward_ratio']:6.1f} {ms['plain train']:9.1f} {ms['deformable train']:10.1f} "
              f"{r['train_ratio']:8.1f}")

    disc = bench_discriminator(batch, rounds, repeats)
    print("\nDiscriminator (dcgan64) forward + backward per model.deformable")
    for layers, ratio in disc["ratio"].items():
        print(f"  {layers:16} {disc['ms'][layers]:8.1f} ms   x{ratio:.2f} of none")

    up = bench_upsample(batch, rounds, repeats)
    print("\nGenerator (dcgan64) forward + backward per model.upsample")
    for mode, ratio in up["ratio"].items():
        print(f"  {mode:16} {up['ms'][mode]:8.1f} ms   x{ratio:.2f} of deconv")

    tr = bench_translate(batch, rounds, repeats)
    print("\ntranslate() forward + gradient to the shift, 64x64x3 images")
    for name, ratio in tr["ratio"].items():
        print(f"  {name:20} {tr['ms'][name]:8.2f} ms   x{ratio:.2f} of a generator forward pass")
    return {"deformable": deform, "discriminator": disc, "upsample": up, "translate": tr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench_ops(args.batch, args.rounds, args.repeats)


if __name__ == "__main__":
    main()
