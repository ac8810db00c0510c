"""Speed benchmarks. Every figure is compared with a matrix product timed in the same run, so the
ratios hold on a busy or a different machine; absolute seconds do not.

    python scripts/benchmark.py train      # DCGAN training step, fp32 and bf16
    python scripts/benchmark.py complete   # z-search step, fp32 and bf16
    python scripts/benchmark.py search-parts  # where the fp32 z-search step's time goes
    python scripts/benchmark.py train-layers  # each convolution's passes in training, both precisions
    python scripts/benchmark.py train-profile # the training step's op time by op kind (profiler)
    python scripts/benchmark.py curves --model M --images aligned/celeba-val
                                           # PSNR along the search for each recipe
    python scripts/benchmark.py shift --model M --images aligned/celeba-val
                                           # shifted faces, with and without --optimize-shift
    python scripts/benchmark.py ops        # deformable conv, upsampling modes, translate()
                                           # (--batch 64 --rounds 7 --repeats 3)
    python scripts/benchmark.py blend      # Poisson solvers: sparse direct against CG, by hole size
    python scripts/benchmark.py all
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def timed(fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds per call after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_gflops(dtype: str, n: int | None = None) -> float:
    """GFLOP/s of an n^3 product: 2048 on a CPU, 8192 on a GPU (a 2048^3 product takes tens of
    microseconds there, so it would time the launch, not the arithmetic)."""
    import tensorflow as tf

    if n is None:
        n = 8192 if tf.config.list_physical_devices("GPU") else 2048

    a = tf.random.normal((n, n), dtype=tf.float32)
    b = tf.random.normal((n, n), dtype=tf.float32)
    if dtype == "bfloat16":
        a, b = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
    f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    return 2 * n ** 3 / timed(lambda: f().numpy(), 5) / 1e9


def layer_flops(model) -> list[tuple[str, float]]:
    """Forward multiply-add FLOPs per image of each conv/deconv/dense layer: [(name, flops)]."""
    out = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Conv2DTranspose", "Dense"):
            continue
        w = layer.kernel.shape
        if kind == "Dense":
            out.append((layer.name, 2.0 * w[0] * w[1]))
        elif kind == "Conv2D":  # per output pixel: K*K*Cin*Cout
            h, wd = layer.output.shape[1:3]
            out.append((layer.name, 2.0 * w[0] * w[1] * w[2] * w[3] * h * wd))
        else:  # transposed: per input pixel: K*K*Cin*Cout
            h, wd = layer.input.shape[1:3]
            out.append((layer.name, 2.0 * w[0] * w[1] * w[2] * w[3] * h * wd))
    return out


def pass_flops(model) -> dict[str, float]:
    """Per image: forward, weight-gradient and input-gradient FLOPs (the input gradient of the
    first layer is never needed)."""
    f = layer_flops(model)
    fwd = sum(v for _, v in f)
    return {"fwd": fwd, "wgrad": fwd, "igrad": fwd - f[0][1]}


def _recipe():
    """The shipped model's training config, configs/celeba64.toml."""
    from inpaint.config import load_config

    return load_config(Path(__file__).resolve().parent.parent / "configs" / "celeba64.toml")


def _recipe_trainer(precision: str, g_steps: int, *overrides: str):
    """A GANTrainer of the shipped recipe in `precision` with `g_steps` (and config `overrides`),
    and a fixed batch of uniform noise images to step it on."""
    import tensorflow as tf

    from inpaint.config import apply_overrides
    from inpaint.train import GANTrainer

    cfg = apply_overrides(_recipe(), [f"train.precision={precision}", f"train.g_steps={g_steps}",
                                      *overrides])
    real = tf.constant(np.random.default_rng(0).uniform(
        -1, 1, (cfg.train.batch_size, 64, 64, 3)).astype(np.float32))
    return GANTrainer(cfg), real


def bench_train(repeats: int = 5) -> list[dict]:
    """Per precision: one D update + one G update (g_steps=1, the figure the README quotes), and
    the shipped recipe (configs/celeba64.toml: g_steps=2), at batch 64, both with the generator's
    weight average. FLOPs count only the networks' arithmetic, so the weight average, the optimizers
    and anything else the step does lower the ratio. Then the 1 D + 1 G step that adds the R1
    penalty (train.r1_gamma > 0: one step in train.r1_every), counted with the plain step's FLOPs:
    its lower ratio is what the penalty's double backward pass costs."""
    from inpaint.hardware import resolve_precision

    rows = []
    for precision in ("float32", "mixed_bfloat16"):
        mm = matmul_gflops("bfloat16" if "bfloat16" in precision else "float32")
        for name, g_steps, extra in (
                ("1 D + 1 G update", 1, ()),
                ("1 D + 2 G updates (celeba64 recipe)", _recipe().train.g_steps, ()),
                ("1 D + 1 G update adding R1 (its FLOPs not counted)", 1,
                 ("train.r1_gamma=0.01", "train.r1_every=1"))):
            tr, real = _recipe_trainer(precision, g_steps, *extra)
            g, d = pass_flops(tr.generator), pass_flops(tr.discriminator)
            b = tr.cfg.train.batch_size
            # D step: D fwd on real and fake, D backward (weights, inner inputs) on both. Each G
            # step: G fwd, D fwd, D input gradients, G backward (weights, inner inputs); the first
            # G step's G fwd is the one the D step's fakes come from (computed once since 2026-12-03;
            # before, the D step ran its own: one G fwd more a step).
            per_image = (2 * (d["fwd"] + d["wgrad"] + d["igrad"])
                         + g_steps * (g["fwd"] + d["fwd"] + d["igrad"] + g["wgrad"] + g["igrad"]))
            sec = timed(lambda tr=tr, real=real: tr.train_step(real), repeats)
            gflops = per_image * b / sec / 1e9
            rows.append({"what": f"train {name}, {precision}", "seconds": sec,
                         "images_per_s": b / sec, "gflops": gflops, "matmul_gflops": mm,
                         "ratio": gflops / mm})
    auto = resolve_precision("auto", training=True)
    print(f"train.precision = 'auto' trains in {auto} on this machine")
    return rows


def bench_train_profile(repeats: int = 5) -> None:
    """The 1 D + 1 G training step in mixed bfloat16 and float32, traced by TensorFlow's profiler
    for `repeats` steps: the executor threads' op time per step by op kind (oneDNN's kernels
    carry their _Mkl names), largest first, and its share. TensorFlow runs independent ops side
    by side (two inter-op threads here), so the op times add up to more than the step."""
    import collections
    import glob
    import tempfile

    import tensorflow as tf

    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError:
        raise SystemExit("train-profile needs TensorFlow's profiler protobufs "
                         "(tensorflow.tsl.profiler), which this TensorFlow does not ship") from None
    for precision in ("mixed_bfloat16", "float32"):
        tr, real = _recipe_trainer(precision, g_steps=1)
        sec = timed(lambda tr=tr, real=real: tr.train_step(real), repeats)
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            for _ in range(repeats):
                tr.train_step(real)
            tf.profiler.experimental.stop()
            space = xplane_pb2.XSpace()
            trace = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
            space.ParseFromString(Path(trace).read_bytes())
        by_kind: collections.Counter = collections.Counter()
        for plane in space.planes:
            names = {k: v.name for k, v in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for ev in line.events:
                    name = names.get(ev.metadata_id, "?")
                    if name != "ExecutorState::Process":  # the executor's own span, not an op
                        by_kind[name.split(":")[-1]] += ev.duration_ps / 1e9 / repeats
        total = sum(by_kind.values())
        print(f"\n{precision}: {sec:.3f} s/step, {total:.0f} ms of op time a step")
        print("| op kind | ms/step | share |\n|---|---|---|")
        for kind, ms in by_kind.most_common(20):
            print(f"| {kind} | {ms:.1f} | {ms / total:.1%} |")


def bench_train_layers(repeats: int = 5) -> list[dict]:
    """Each convolution of the dcgan64 generator and discriminator at batch 64, as the training
    step runs it (inpaint's layers, so the matmul weight gradient where it applies): forward, input
    gradient and weight gradient timed apart, each against the same-run matmul. The training step
    is these passes (about 85-90% of its time) plus batch norm, activations and the optimizers."""
    import tensorflow as tf

    from inpaint.config import Config
    from inpaint.models import build_discriminator, build_generator

    cfg, b = Config().model, 64
    rows = []
    for precision in ("float32", "mixed_bfloat16"):
        mm = matmul_gflops("bfloat16" if "bfloat16" in precision else "float32")
        for net in (build_generator(cfg, precision), build_discriminator(cfg, precision)):
            flops = dict(layer_flops(net))
            for layer in net.layers:
                if type(layer).__name__ not in ("Conv2D", "Conv2DTranspose"):
                    continue
                dtype = layer.compute_dtype
                x = tf.cast(tf.random.normal((b,) + tuple(layer.input.shape[1:])), dtype)
                dy = tf.cast(tf.random.normal((b,) + tuple(layer.output.shape[1:])), dtype)
                kernel = layer.kernel

                def grads(x, layer=layer, dy=dy, kernel=kernel):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        y = layer(x, training=True)
                    return tape.gradient(y, [x, kernel], output_gradients=dy)

                passes = {"forward": tf.function(lambda x, layer=layer: layer(x, training=True)),
                          "input gradient": tf.function(lambda x, g=grads: g(x)[0]),
                          "weight gradient": tf.function(lambda x, g=grads: g(x)[1])}
                for what, fn in passes.items():
                    sec = timed(lambda fn=fn, x=x: fn(x).numpy(), repeats)
                    gflops = flops[layer.name] * b / sec / 1e9
                    rows.append({"what": f"{layer.name} {tuple(layer.input.shape[1:])} -> "
                                         f"{tuple(layer.output.shape[1:])} {what}, {precision}",
                                 "seconds": sec, "images_per_s": b / sec, "gflops": gflops,
                                 "matmul_gflops": mm, "ratio": gflops / mm})
    return rows


def bench_complete(repeats: int = 5) -> list[dict]:
    """One z-search step (forward and backward through G and D, only z updated) at batch 64."""
    import tensorflow as tf

    from inpaint.config import Config, SearchOptions
    from inpaint.models import build_discriminator, build_generator
    from inpaint.search import LatentSearch

    rows = []
    cfg = Config()
    for precision, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        gen, disc = build_generator(cfg.model, policy), build_discriminator(cfg.model, policy)
        search = LatentSearch(gen, disc, SearchOptions(iters=1, precision=precision))
        g, d = pass_flops(gen), pass_flops(disc)
        # forward through G and D, then input gradients all the way back to z
        per_image = 2 * (g["fwd"] + d["fwd"])
        b = 64
        z = tf.random.uniform((b, 100), -1, 1)
        target = tf.zeros((b, 64, 64, 3))
        w = tf.ones((b, 64, 64))
        state = search.initial_state(z.numpy())

        def step(search=search, state=state, target=target, w=w):
            search.step(state, target, w)[0]["z"].numpy()

        sec = timed(step, repeats)
        mm = matmul_gflops("bfloat16" if precision == "bfloat16" else "float32")
        gflops = per_image * b / sec / 1e9
        rows.append({"what": f"z-search step {precision}", "seconds": sec,
                     "images_per_s": b / sec, "gflops": gflops, "matmul_gflops": mm,
                     "ratio": gflops / mm})
    return rows


def bench_search_parts(repeats: int = 5) -> list[dict]:
    """Where the float32 z-search step's time goes: G and D forward alone, each forward and back
    to its input, and the whole step (those plus the loss, Adam and clipping), at batch 64."""
    import tensorflow as tf

    from inpaint.config import Config, SearchOptions
    from inpaint.models import build_discriminator, build_generator
    from inpaint.search import LatentSearch

    cfg, b = Config(), 64
    gen, disc = build_generator(cfg.model), build_discriminator(cfg.model)
    g, d = pass_flops(gen), pass_flops(disc)
    z = tf.random.uniform((b, cfg.model.z_dim), -1, 1)
    img = tf.random.uniform((b, 64, 64, 3), -1, 1)

    def to_input(net):
        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.reduce_sum(net(x, training=False))
            return tape.gradient(y, x)
        return run

    search = LatentSearch(gen, disc, SearchOptions(iters=1, precision="float32"))
    state, w = search.initial_state(z.numpy()), tf.ones((b, 64, 64))
    g_fwd, d_fwd = tf.function(lambda x: gen(x, training=False)), tf.function(
        lambda x: disc(x, training=False))
    g_back, d_back = to_input(gen), to_input(disc)
    parts = [("G forward", lambda: g_fwd(z).numpy(), g["fwd"]),
             ("D forward", lambda: d_fwd(img).numpy(), d["fwd"]),
             ("G forward + back to z", lambda: g_back(z).numpy(), 2 * g["fwd"]),
             ("D forward + back to the image", lambda: d_back(img).numpy(), 2 * d["fwd"]),
             ("whole z-search step", lambda: search.step(state, img, w)[0]["z"].numpy(),
              2 * (g["fwd"] + d["fwd"]))]
    mm = matmul_gflops("float32")
    rows = []
    for name, fn, flops in parts:
        sec = timed(fn, repeats)
        rows.append({"what": f"{name}, float32", "seconds": sec, "images_per_s": b / sec,
                     "gflops": flops * b / sec / 1e9, "matmul_gflops": mm,
                     "ratio": flops * b / sec / 1e9 / mm})
    return rows


RECIPES = {
    # the seed's recipe (the reference code): momentum, 1000 iterations, plain L1, no blending
    "seed (momentum, plain L1)": dict(optimizer="momentum", context_weighting="none",
                                      init="random"),
    "adam + yeh weighting": dict(optimizer="adam", init="random"),
    "adam + yeh, bf16": dict(optimizer="adam", precision="bfloat16", init="random"),
    "adam + yeh, encoder start": dict(optimizer="adam", init="encoder"),
}


def load_faces(images: Path, limit: int):
    from inpaint.images import find_images, read_faces

    faces, stems, _ = read_faces(find_images(images)[:limit], 64)
    return faces, stems


def bench_curves(model_path: Path, images: Path, limit: int, iters: int, mask: str) -> None:
    """PSNR of completed faces along the search for each recipe, and the iterations and seconds
    each needs to reach the seed recipe's final PSNR."""
    from inpaint.config import SearchOptions
    from inpaint.evaluate import quality_curve
    from inpaint.models import load_model

    model = load_model(model_path)
    faces, stems = load_faces(images, limit)
    curves = {name: quality_curve(model, faces, stems, mask,
                                  SearchOptions(iters=iters, **kw), every=25)
              for name, kw in RECIPES.items()
              if kw.get("init") != "encoder" or model.encoder is not None}
    seed = curves["seed (momentum, plain L1)"]
    target, seed_time = seed[-1]["psnr"], seed[-1]["seconds"]
    print(f"{len(faces)} faces, mask {mask}; target = the seed recipe's PSNR after {iters} "
          f"iterations: {target:.2f} dB in {seed_time:.0f} s")
    print("| recipe | PSNR @100 | @200 | @500 | final | iterations to target | seconds to target "
          "| fraction of seed time |")
    print("|---|---|---|---|---|---|---|---|")
    for name, curve in curves.items():
        at = {c["iteration"]: c["psnr"] for c in curve}
        hit = next((c for c in curve if c["psnr"] >= target), None)
        reach = (f"{hit['iteration']} | {hit['seconds']:.0f} | {hit['seconds'] / seed_time:.2f}"
                 if hit else "not reached | | ")
        print(f"| {name} | {at.get(100, float('nan')):.2f} | {at.get(200, float('nan')):.2f} | "
              f"{at.get(500, float('nan')):.2f} | {curve[-1]['psnr']:.2f} | {reach} |")


def bench_shift(model_path: Path, images: Path, limit: int, iters: int, max_shift: int) -> None:
    """Faces translated by a random whole-pixel shift of up to `max_shift` px per axis (edges
    repeated), completed with the centre mask with and without --optimize-shift; PSNR against
    the shifted faces."""
    import tensorflow as tf

    from inpaint.config import SearchOptions
    from inpaint.evaluate import psnr
    from inpaint.masks import build_mask, image_seed
    from inpaint.models import load_model
    from inpaint.ops import translate
    from inpaint.search import complete

    model = load_model(model_path)
    faces, stems = load_faces(images, limit)
    rng = np.random.default_rng(0)
    shifts = rng.integers(-max_shift, max_shift + 1, (len(faces), 2)).astype(np.float32)
    moved = translate(tf.constant(faces, tf.float32), tf.constant(shifts), "nearest").numpy()
    moved = np.clip(np.round(moved), 0, 255).astype(np.uint8)
    masks = np.stack([build_mask("center", 64)] * len(faces))
    print(f"{len(faces)} faces shifted by up to {max_shift} px, centre mask, {iters} iterations")
    print("| input | --optimize-shift | PSNR completed | PSNR blended | mean abs shift error |")
    print("|---|---|---|---|---|")
    for label, data in (("aligned", faces), ("shifted", moved)):
        for on in (False, True):
            opts = SearchOptions(iters=iters, optimize_shift=on, max_shift=float(max_shift))
            g, d = model.networks(opts.precision)
            r = complete(g, d, data, masks, options=opts,
                         seeds=[image_seed(0, s) for s in stems])
            err = ""
            if on and label == "shifted":
                err = f"{np.abs(r.shifts - shifts).mean():.2f} px"
            print(f"| {label} | {'on' if on else 'off'} | "
                  f"{np.mean([psnr(a, b) for a, b in zip(data, r.completed)]):.2f} | "
                  f"{np.mean([psnr(a, b) for a, b in zip(data, r.blended)]):.2f} | {err} |",
                  flush=True)


def bench_blend(repeats: int = 3) -> None:
    """Seconds of the two Poisson solvers on a centre hole (half the side) of square images."""
    from inpaint.blend import poisson_blend

    print("| image | hole pixels | direct (s) | cg (s) | cg / direct |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for side in (64, 128, 256, 512):
        target, source = rng.uniform(0, 255, (2, side, side, 3))
        mask = np.ones((side, side))
        mask[side // 4:3 * side // 4, side // 4:3 * side // 4] = 0
        def solve(solver, target=target, source=source, mask=mask):
            return poisson_blend(target, source, mask, solver=solver)

        t_direct = timed(lambda: solve("direct"), repeats, 1)
        t_cg = timed(lambda: solve("cg"), repeats, 1) if side <= 256 else float("nan")
        print(f"| {side}x{side} | {(side // 2) ** 2} | {t_direct:.4f} | {t_cg:.4f} | "
              f"{t_cg / t_direct:.0f}x |", flush=True)


# ----------------------------------------------------------------------------- building blocks

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
    """What the building blocks of inpaint.ops / inpaint.layers cost, as ratios measured in one
    run; prints the tables and returns the numbers.

    1. A deformable convolution (ConvOffset2D, then the convolution) against the plain
       convolution of the same shape, for the discriminator layers of the 64x64 DCGAN: forward,
       and forward + backward.
    2. The 64x64 discriminator, forward + backward, with `model.deformable` = [], ["d_conv3"],
       ["d_conv1"].
    3. The 64x64 generator with each `model.upsample` mode, forward + backward, against "deconv".
    4. translate() of a batch of 64x64 faces, forward + backward to the shift, against one
       generator forward pass (what it adds to a completion step).

    Everything is float32 and compiled with tf.function (no XLA). The candidates of one
    comparison are timed in interleaved rounds and each ratio is a median over rounds, so a
    machine whose load drifts (a training job beside it) still gives fair ratios; the absolute
    times are printed for context."""
    print(f"inpaint ops benchmark: float32, tf.function without XLA, batch {batch}, "
          f"{device_name()}, median of {rounds} interleaved rounds of {repeats}")

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


def device_name() -> str:
    """The device the benchmarks ran on, for the table's heading."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', 'unknown')} (TensorFlow {tf.__version__})"
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores (TensorFlow {tf.__version__})"


def print_rows(rows: list[dict]) -> None:
    print(f"\non {device_name()}")
    print("| what | s/step (batch 64) | images x steps / s | GFLOP/s | same-run matmul GFLOP/s "
          "| ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['seconds']:.3f} | {r['images_per_s']:.1f} | "
              f"{r['gflops']:.0f} | {r['matmul_gflops']:.0f} | {r['ratio']:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "train-layers", "train-profile", "complete",
                                         "search-parts", "ops", "all", "curves", "shift",
                                         "blend"])
    parser.add_argument("--repeats", type=int,
                        help="timed calls per figure (default 5; blend and ops: 3 per round)")
    parser.add_argument("--batch", type=int, default=64, help="ops: batch size")
    parser.add_argument("--rounds", type=int, default=7, help="ops: interleaved rounds")
    parser.add_argument("--model", type=Path, help="curves/shift: a model directory")
    parser.add_argument("--images", type=Path, help="curves/shift: aligned validation faces")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--mask", default="center")
    parser.add_argument("--max-shift", type=int, default=4)
    args = parser.parse_args()
    if args.what in ("curves", "shift"):
        if not (args.model and args.images):
            parser.error(f"{args.what} needs --model and --images")
        if args.what == "curves":
            bench_curves(args.model, args.images, args.limit, args.iters, args.mask)
        else:
            bench_shift(args.model, args.images, args.limit, args.iters, args.max_shift)
        return
    if args.what == "blend":
        bench_blend(args.repeats or 3)
        return
    if args.what == "train-profile":
        bench_train_profile(args.repeats or 5)
        return
    rows = []
    if args.what in ("train", "all"):
        rows += bench_train(args.repeats or 5)
    if args.what in ("train-layers", "all"):
        rows += bench_train_layers(args.repeats or 5)
    if args.what in ("complete", "all"):
        rows += bench_complete(args.repeats or 5)
    if args.what in ("search-parts", "all"):
        rows += bench_search_parts(args.repeats or 5)
    if rows:
        print_rows(rows)
    if args.what in ("ops", "all"):
        bench_ops(args.batch, args.rounds, args.repeats or 3)


if __name__ == "__main__":
    main()
