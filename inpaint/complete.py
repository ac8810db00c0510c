"""Semantic inpainting by latent search (Yeh et al., CVPR 2017).

For images y with masks M (1 = known), find z in [-1, 1]^d minimising, per image,
    L(z) = || W * (G(z) - y) ||_1  +  lam * L_p(z)
where W is the mask, or Yeh et al.'s weighting of known pixels by how many unknown pixels surround
them (masks.context_weights), and L_p is the discriminator's verdict on G(z): the paper's
log(1 - D(G(z))) or the non-saturating -log D(G(z)). Then G(z) fills the hole, optionally
Poisson-blended into the known pixels.

`complete()` is the algorithm on arrays; `complete_files()` runs it over image files and writes
the outputs. Only z changes: the networks run in inference mode.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inpaint import masks as masklib
from inpaint.blend import poisson_blend
from inpaint.errors import Diverged, ImageReadError, InpaintError, MaskError, RunDirError

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "momentum")
PERCEPTUAL = ("nonsaturating", "paper")
DEFAULT_LR = {"adam": 0.03, "momentum": 0.01}


@dataclass
class SearchOptions:
    """The latent search. Defaults are the toolkit's recommended settings (see README)."""

    iters: int = 150  # measured: Adam with Yeh weighting has converged by ~100 (README)
    optimizer: str = "adam"  # "adam" | "momentum" (the reference's Nesterov update)
    lr: float | None = None  # None: 0.03 for adam, 0.01 for momentum
    momentum: float = 0.9
    beta2: float = 0.999  # adam
    lam: float = 0.1  # weight of the perceptual loss (Yeh et al.)
    perceptual: str = "nonsaturating"  # -log D(G(z)); "paper": log(1 - D(G(z)))
    context_weighting: str = "yeh"  # "yeh" | "none" (plain L1 of known pixels)
    restarts: int = 1
    seed: int = 0
    precision: str = "float32"  # "float32" | "bfloat16" compute for the search
    optimize_shift: bool = False  # also search a sub-pixel translation of G(z) per image
    max_shift: float = 4.0  # pixels, each axis
    shift_lr: float = 0.05  # pixels per Adam step

    def validate(self) -> SearchOptions:
        for name in ("lr", "momentum", "beta2", "lam", "max_shift", "shift_lr"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise InpaintError(f"{name} must be a finite number, got {value}")
        if not 0.0 <= self.momentum <= 1.0 or not 0.0 <= self.beta2 < 1.0:
            raise InpaintError(f"momentum must be in [0, 1] and beta2 in [0, 1), got "
                               f"{self.momentum} and {self.beta2}")
        if self.lam < 0:
            raise InpaintError(f"the perceptual weight lam must be >= 0, got {self.lam}")
        if self.seed < 0:
            raise InpaintError(f"seed must be >= 0, got {self.seed}")
        if self.iters < 0:
            raise InpaintError(f"iterations must be >= 0, got {self.iters}")
        if self.optimizer not in OPTIMIZERS:
            raise InpaintError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.perceptual not in PERCEPTUAL:
            raise InpaintError(f"perceptual loss must be one of {PERCEPTUAL}")
        if self.context_weighting not in ("yeh", "none"):
            raise InpaintError("context weighting must be 'yeh' or 'none'")
        if self.restarts < 1:
            raise InpaintError(f"restarts must be >= 1, got {self.restarts}")
        if self.precision not in ("float32", "bfloat16"):
            raise InpaintError("search precision must be float32 or bfloat16")
        if self.max_shift < 0 or self.shift_lr <= 0:
            raise InpaintError("max shift must be >= 0 and the shift step > 0")
        if self.learning_rate <= 0:
            raise InpaintError(f"learning rate must be > 0, got {self.learning_rate}")
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


@dataclass
class CompletionResult:
    """Arrays for B images of size S. Losses are per image, recorded before every update and once
    after the last: shape (iters + 1, B)."""

    z: np.ndarray  # (B, z_dim) float32 in [-1, 1], the winning restart
    generated: np.ndarray  # (B, S, S, 3) float32 in [-1, 1], G(z)
    completed: np.ndarray  # (B, S, S, 3) uint8: known pixels of the input, the hole from G(z)
    blended: np.ndarray | None  # (B, S, S, 3) uint8, Poisson-blended; None if not asked
    losses: dict[str, np.ndarray] = field(default_factory=dict)  # total/contextual/perceptual
    shifts: np.ndarray | None = None  # (B, 2) (dy, dx) pixels of G(z), with optimize_shift


def paste(images: np.ndarray, generated: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Known pixels of `images` (uint8, copied bit-exactly), the rest from `generated` ([-1, 1]).
    images: (B, S, S, 3) uint8; generated: (B, S, S, 3); masks: (B, S, S). -> uint8."""
    from inpaint.images import to_uint8

    return np.where(masks[..., None] > 0.5, images, to_uint8(generated))


def blend(images: np.ndarray, generated: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Poisson-blend G(z) into each hole: (B, S, S, 3) uint8 with known pixels unchanged."""
    out = np.empty_like(images)
    for i in range(len(images)):
        gen255 = (np.asarray(generated[i], np.float64) + 1.0) * 127.5
        solved = poisson_blend(images[i].astype(np.float64), gen255, masks[i])
        filled = np.clip(np.round(solved), 0, 255).astype(np.uint8)
        out[i] = np.where(masks[i][..., None] > 0.5, images[i], filled)
    return out


class LatentSearch:
    """The graph-compiled search step for one pair of networks; reusable across batches.

    Each step evaluates the loss at the current z, updates z and clips it to [-1, 1]. With
    `optimize_shift`, G(z) is translated by a per-image sub-pixel shift (ops.translate, bilinear)
    before the loss, and the shift is searched too, with Adam, within +-max_shift pixels."""

    def __init__(self, generator, discriminator, opts: SearchOptions, lowres: bool = False):
        import tensorflow as tf

        self.opts = opts.validate()
        self.generator, self.discriminator = generator, discriminator
        self.lowres = lowres
        self.z_dim = int(generator.input_shape[-1])
        self._step = tf.function(self._step_fn)
        self._loss = tf.function(self._losses)

    def _losses(self, z, shift, target, weights):
        """-> G(z) (translated by shift), total, contextual, perceptual; each loss (N,)."""
        import tensorflow as tf

        g = self.generator(z, training=False)
        if self.opts.optimize_shift:
            from inpaint.ops import translate

            g = translate(g, shift, "bilinear")
        logits = tf.cast(self.discriminator(g, training=False), tf.float32)[:, 0]
        if self.lowres:
            k = masklib.LOWRES_BLOCK
            pool = lambda x: tf.nn.avg_pool2d(x, k, k, "VALID")  # noqa: E731
            contextual = tf.reduce_sum(tf.abs(pool(g) - pool(target)), axis=[1, 2, 3])
        else:
            contextual = tf.reduce_sum(tf.abs(weights[..., None] * (g - target)), axis=[1, 2, 3])
        if self.opts.perceptual == "paper":
            perceptual = -tf.nn.softplus(logits)  # log(1 - sigmoid(l))
        else:
            perceptual = tf.nn.softplus(-logits)  # -log sigmoid(l)
        total = contextual + self.opts.lam * perceptual
        return g, total, contextual, perceptual

    def _adam(self, x, grad, m, v, t, lr):
        import tensorflow as tf

        b1, b2 = self.opts.momentum, self.opts.beta2
        m = b1 * m + (1.0 - b1) * grad
        v = b2 * v + (1.0 - b2) * tf.square(grad)
        x = x - lr * (m / (1.0 - b1 ** t)) / (tf.sqrt(v / (1.0 - b2 ** t)) + 1e-8)
        return x, m, v

    def _step_fn(self, state, target, weights):
        import tensorflow as tf

        o = self.opts
        z, shift = state["z"], state["shift"]
        with tf.GradientTape() as tape:
            tape.watch([z, shift])
            g, total, contextual, perceptual = self._losses(z, shift, target, weights)
            objective = tf.reduce_sum(total)  # images are independent: per-image gradients
        gz, gs = tape.gradient(objective, [z, shift])
        t = state["t"] + 1.0
        lr = o.learning_rate
        new = dict(state, t=t)
        if o.optimizer == "momentum":
            # Nesterov momentum in the reference's form: v' = mu v - lr g; z += -mu v + (1+mu) v'
            v = o.momentum * state["v"] - lr * gz
            new["z"] = z - o.momentum * state["v"] + (1.0 + o.momentum) * v
            new["v"] = v
        else:
            new["z"], new["v"], new["s"] = self._adam(z, gz, state["v"], state["s"], t, lr)
        new["z"] = tf.clip_by_value(new["z"], -1.0, 1.0)
        if o.optimize_shift:
            shift, new["shift_m"], new["shift_v"] = self._adam(
                shift, gs, state["shift_m"], state["shift_v"], t, o.shift_lr)
            new["shift"] = tf.clip_by_value(shift, -o.max_shift, o.max_shift)
        return new, g, total, contextual, perceptual

    def initial_state(self, z0: np.ndarray) -> dict:
        import tensorflow as tf

        z = tf.constant(z0, tf.float32)
        zeros2 = tf.zeros((len(z0), 2))
        return {"z": z, "v": tf.zeros_like(z), "s": tf.zeros_like(z), "t": tf.constant(0.0),
                "shift": zeros2, "shift_m": zeros2, "shift_v": zeros2}

    def run(self, target: np.ndarray, weights: np.ndarray, z0: np.ndarray,
            callback: Callable[[int, np.ndarray, dict], None] | None = None):
        """Search from z0: (N, z_dim). target: (N, S, S, 3) float32 in [-1, 1]; weights:
        (N, S, S). Calls callback(iteration, G(z) (N, S, S, 3), losses) before each update and
        after the last. Returns (z, G(z), losses dict of (iters + 1, N), shifts (N, 2))."""
        import tensorflow as tf

        state = self.initial_state(z0)
        target = tf.constant(target, tf.float32)
        weights = tf.constant(weights, tf.float32)
        history = {"total": [], "contextual": [], "perceptual": []}

        def record(i, g, total, contextual, perceptual):
            losses = {"total": total.numpy(), "contextual": contextual.numpy(),
                      "perceptual": perceptual.numpy()}
            bad = ~np.isfinite(losses["total"])
            if bad.any():
                raise Diverged(f"the latent search diverged at iteration {i}: the loss of "
                               f"{int(bad.sum())} of {bad.size} searches is NaN or infinite "
                               f"(try a lower --lr than {self.opts.learning_rate:g}); nothing "
                               "of this batch was saved")
            for k, val in losses.items():
                history[k].append(val)
            if callback is not None:
                callback(i, g, losses)

        for i in range(self.opts.iters):
            state, g, total, contextual, perceptual = self._step(state, target, weights)
            record(i, g, total, contextual, perceptual)
        g, total, contextual, perceptual = self._loss(state["z"], state["shift"], target, weights)
        record(self.opts.iters, g, total, contextual, perceptual)
        return (state["z"].numpy(), g.numpy(), {k: np.stack(v) for k, v in history.items()},
                state["shift"].numpy())


def initial_z(n_images: int, restarts: int, z_dim: int, seeds: Sequence | None = None,
              seed: int = 0) -> np.ndarray:
    """Starting points: (n_images * restarts, z_dim) uniform in [-1, 1], image-major. With
    `seeds` (one per image) each image's starts depend only on its own seed."""
    if seeds is None:
        seeds = [[seed, i] for i in range(n_images)]
    return np.concatenate([np.random.default_rng(s).uniform(-1.0, 1.0, (restarts, z_dim))
                           for s in seeds]).astype(np.float32)


def complete(generator, discriminator, images: np.ndarray, masks: np.ndarray, *,
             options: SearchOptions | None = None, lowres: bool = False, blend_result: bool = True,
             seeds: Sequence | None = None,
             callback: Callable[[int, np.ndarray, np.ndarray, dict], None] | None = None,
             search: LatentSearch | None = None) -> CompletionResult:
    """Complete B images.

    images: (B, S, S, 3) uint8; masks: (B, S, S) with 1 = known. With `lowres`, the search matches
    8x8 block means of the images instead of pixels (and nothing is pasted). `seeds`: one per image
    for its starting z (default: derived from options.seed and the position). `callback(iteration,
    generated (B, S, S, 3) float32, completions (B, S, S, 3) uint8, losses {name: (B,)})` sees the
    current best restart of each image.
    Returns a CompletionResult; `losses` are those of the winning restart of each image."""
    from inpaint.images import to_float

    opts = (options or SearchOptions()).validate()
    images = np.asarray(images)
    masks = np.asarray(masks, np.float32)
    b, k = len(images), opts.restarts
    search = search or LatentSearch(generator, discriminator, opts, lowres=lowres)
    z_dim = search.z_dim
    if opts.context_weighting == "yeh":
        weights = masklib.context_weights(masks)
    else:
        weights = masks.copy()
    target = np.repeat(to_float(images), k, axis=0)
    weights_k = np.repeat(weights, k, axis=0)
    z0 = initial_z(b, k, z_dim, seeds, opts.seed)

    def best_of(total):  # (B*K,) -> index into B*K of each image's best restart
        return np.arange(b) * k + total.reshape(b, k).argmin(axis=1)

    paste_masks = np.zeros_like(masks) if lowres else masks

    def on_step(i, g, losses):
        idx = best_of(losses["total"])
        gen = g.numpy()[idx]
        callback(i, gen, paste(images, gen, paste_masks),
                 {name: val[idx] for name, val in losses.items()})

    z, g, history, shifts = search.run(target, weights_k, z0, on_step if callback else None)
    idx = best_of(history["total"][-1])
    losses = {name: val[:, idx] for name, val in history.items()}
    generated = g[idx]
    completed = paste(images, generated, paste_masks)
    blended = blend(images, generated, masks) if blend_result and not lowres else None
    return CompletionResult(z[idx], generated, completed, blended, losses, shifts[idx])


# ----------------------------------------------------------------------------- files


@dataclass
class MaskSpec:
    """Where each image's mask comes from: a type, a file, a folder of per-image files or a box."""

    kind: str = "center"
    center_scale: float = 0.25
    missing_fraction: float = 0.8
    file: Path | None = None
    folder: Path | None = None
    box: tuple[int, int, int, int] | None = None
    seed: int = 0

    @property
    def lowres(self) -> bool:
        return self.kind == "lowres" and self.file is None and self.folder is None \
            and self.box is None

    def describe(self) -> str:
        if self.file:
            return f"file {self.file}"
        if self.folder:
            return f"folder {self.folder}"
        if self.box:
            return "box {},{},{},{}".format(*self.box)
        return self.kind

    def key(self) -> dict:
        """What decides the masks (for telling runs with other masks apart)."""
        if self.file or self.folder or self.box:
            return {"mask": self.describe()}
        key: dict = {"mask": self.kind}
        if self.kind == "center":
            key["center_scale"] = self.center_scale
        if self.kind == "random":
            key["missing_fraction"] = self.missing_fraction
        return key

    def mask_for(self, stem: str, size: int, image_wh: tuple[int, int] | None = None
                 ) -> np.ndarray:
        if self.box is not None:
            return masklib.box_mask(self.box, size)
        if self.file is not None:
            return masklib.read_mask(self.file, size, image_wh)
        if self.folder is not None:
            return masklib.read_mask(masklib.find_mask_for(self.folder, stem), size, image_wh)
        return masklib.build_mask(self.kind, size, center_scale=self.center_scale,
                                  missing_fraction=self.missing_fraction,
                                  seed=masklib.image_seed(self.seed, stem, masklib.MASK_STREAM))


@dataclass
class FilesSummary:
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done in an earlier run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    resized: list[str] = field(default_factory=list)
    resized_example: str = ""  # "<path> is WxH", the first of them
    seconds: float = 0.0
    other_shards: int = 0  # inputs left to the other shards (with `shard`)


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A unique, safe output stem per input (file stems; repeats get -2, -3, ...). A stem is a
    single path component, so no output can escape the output directory. Stems differ in more
    than letter case (a case-insensitive disk would otherwise merge two), and a repeat never
    takes the stem of another input (x.png, x.jpg, x-2.png -> x, x-2, x-2-2)."""
    taken: set[str] = set()
    out = []
    for p in paths:
        base = Path(p).stem or "image"
        base = base.replace("/", "_").replace("\\", "_").lstrip(".") or "image"
        stem, n = base, 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.casefold())
        out.append(stem)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """`"2/4"` -> (2, 4): the second of four shards. ValueError unless 1 <= I <= N."""
    i, sep, n = text.partition("/")
    try:
        shard = int(i), int(n)
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise ValueError(f"expected I/N with 1 <= I <= N (e.g. 1/4), got {text!r}")
    return shard


def in_shard(stems: Sequence[str], shard: tuple[int, int] | None) -> list[bool]:
    """Which inputs shard (I, N) takes: the output stems are sorted and dealt out in turn (the
    first to shard 1, the second to shard 2, ...), so N machines given the same inputs split
    them exactly, whatever order each lists them in; each input goes to one shard. None: all."""
    if shard is None:
        return [True] * len(stems)
    i, n = shard
    rank = {stem: r for r, stem in enumerate(sorted(stems))}
    return [rank[stem] % n == i - 1 for stem in stems]


def masked_view(image: np.ndarray, mask: np.ndarray, lowres: bool) -> np.ndarray:
    """What is known of an image, for people: holes grey, or the block means for lowres."""
    if lowres:
        return np.clip(np.round(masklib.lowres(image)), 0, 255).astype(np.uint8)
    return np.where(mask[..., None] > 0.5, image, np.uint8(128)).astype(np.uint8)


def _prepare(path: Path, stem: str, mask: MaskSpec, size: int,
             summary: FilesSummary | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one input at the model size and build its mask. Raises ImageReadError/MaskError."""
    from inpaint.images import crop_resize, read_image

    img = read_image(path)
    h, w = img.shape[:2]
    m = mask.mask_for(stem, size, (w, h))
    if summary is not None and (mask.file or mask.folder or mask.box):
        if m.min() > 0.5:
            log.warning("the mask of %s marks every pixel known: nothing to fill", path)
        elif m.max() < 0.5:
            log.warning("the mask of %s marks no pixel known: the completion is whatever the "
                        "generator makes, unconstrained by the image", path)
    if (h, w) != (size, size):
        if summary is not None:  # complete_files warns once, with the count
            log.debug("%s is %dx%d: centre-cropped and resized to %d", path, w, h, size)
            summary.resized.append(str(path))
            summary.resized_example = summary.resized_example or f"{path} is {w}x{h}"
        img = crop_resize(img, size, "center", 1.0)
    return img, m


def complete_files(inputs: Sequence[Path], out_dir: Path, model, *, mask: MaskSpec,
                   options: SearchOptions, batch_size: int = 64, blend_result: bool = True,
                   out_interval: int = 10, overwrite: bool = False, progress: bool = True,
                   run_options: dict | None = None, shard: tuple[int, int] | None = None,
                   sheet_scale: int | None = None) -> FilesSummary:
    """Complete every image file in `inputs` with `model` (models.LoadedModel) and write into
    `out_dir`: completed/, blended/, generated/, masked/ (<stem>.png each); progress/NNNN.png and
    hats/NNNN.png (grids of the first batch's completions and raw G(z) every `out_interval`
    iterations; later batches prefix bKKK_); frames/<stem>/NNNN.png (each image's completion over
    the search); sheet.png; log.jsonl (losses per iteration and image); run.json.

    Images stream in batches of `batch_size`. Unreadable images are recorded in the summary and
    skipped; images whose outputs exist are skipped unless `overwrite`. completed/<stem>.png is
    written last, so it marks an image as done.

    `shard` (I, N) completes only shard I of N (`in_shard`), so N processes or machines given
    the same inputs and `out_dir` share the work and their outputs merge: shards other than the
    first prefix their progress/ and hats/ grids with `shardI_`, each writes its own
    log.shard-I-of-N.jsonl and run.shard-I-of-N.json, and sheet.png shows every image completed
    in `out_dir` when the shard finished."""
    from tqdm import tqdm

    from inpaint.images import atomic_write_bytes, make_grid, to_uint8, write_image

    opts = options.validate()
    size = model.config.model.image_size
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = completion_settings(opts, mask, model, blend_result)
    check_settings(out_dir, settings, overwrite)
    shard_tag = f".shard-{shard[0]}-of-{shard[1]}" if shard else ""
    atomic_write_bytes(out_dir / f"run{shard_tag}.json", json.dumps(  # replaced at the end
        {"settings": settings, "finished": False}, indent=2).encode())
    stems = output_stems(inputs)
    summary = FilesSummary()
    t0 = time.time()
    pending = []
    for path, stem, mine in zip(inputs, stems, in_shard(stems, shard)):
        if not mine:
            summary.other_shards += 1
        elif (out_dir / "completed" / f"{stem}.png").exists() and not overwrite:
            summary.skipped.append(str(path))
        else:
            pending.append((Path(path), stem))
    if mask.file is not None:  # a single mask file is checked once, before any work
        mask.mask_for("", size)

    generator, discriminator = _networks(model, opts.precision)
    search = LatentSearch(generator, discriminator, opts, lowres=mask.lowres)
    # Shards share out_dir: files every shard would write get the shard's name.
    grid_prefix = f"shard{shard[0]}_" if shard and shard[0] > 1 else ""
    log_path = out_dir / f"log{shard_tag}.jsonl"
    batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
    bar = tqdm(total=len(pending), disable=not progress, unit="img", desc="images")
    blend_frames = blend_result and not mask.lowres
    for bi, batch in enumerate(batches):
        images, batch_masks, names = [], [], []
        for path, stem in batch:
            try:
                img, m = _prepare(path, stem, mask, size, summary)
            except (ImageReadError, MaskError) as exc:
                summary.failed.append((str(path), str(exc)))
                log.error("%s", exc)
                bar.update(1)
                continue
            images.append(img)
            batch_masks.append(m)
            names.append((path, stem))
        if not images:
            continue
        images, batch_masks = np.stack(images), np.stack(batch_masks)
        prefix = grid_prefix + ("" if bi == 0 else f"b{bi:03d}_")
        it_bar = tqdm(total=opts.iters + 1, disable=not progress, leave=False, unit="it",
                      desc=f"batch {bi + 1}/{len(batches)}")
        torn = _ends_mid_line(log_path)
        log_file = open(log_path, "a", encoding="utf-8")
        if torn:  # a killed run's half line stays on a line of its own
            log_file.write("\n")

        def on_step(i, generated, completions, losses, names=names, prefix=prefix,
                    it_bar=it_bar, log_file=log_file, bi=bi):
            for j, (_, stem) in enumerate(names):
                log_file.write(json.dumps({"batch": bi, "iter": i, "image": stem, **{
                    k: round(float(v[j]), 5) for k, v in losses.items()}}) + "\n")
            if i % out_interval == 0 or i == opts.iters:
                write_image(out_dir / "progress" / f"{prefix}{i:04d}.png",
                            make_grid(completions, ncols=8))
                write_image(out_dir / "hats" / f"{prefix}{i:04d}.png",
                            make_grid(to_uint8(generated), ncols=8))
                for j, (_, stem) in enumerate(names):
                    write_image(out_dir / "frames" / stem / f"{i:04d}.png", completions[j])
                    if blend_frames:  # for make-gif --image, which blends the frames
                        write_image(out_dir / "frames" / stem / "generated" / f"{i:04d}.png",
                                    to_uint8(generated[j]))
            it_bar.update(1)
            # shown at the bar's next redraw: forcing one per step would flood a log
            it_bar.set_postfix(loss=f"{float(np.mean(losses['total'])):.1f}", refresh=False)

        try:
            result = complete(generator, discriminator, images, batch_masks, options=opts,
                              lowres=mask.lowres, blend_result=blend_result,
                              seeds=[masklib.image_seed(opts.seed, s) for _, s in names],
                              callback=on_step, search=search)
        finally:
            log_file.close()
            it_bar.close()
        for j, (path, stem) in enumerate(names):
            write_image(out_dir / "generated" / f"{stem}.png", to_uint8(result.generated[j]))
            write_image(out_dir / "masked" / f"{stem}.png",
                        masked_view(images[j], batch_masks[j], mask.lowres))
            write_image(out_dir / "masks" / f"{stem}.png",  # reusable: --mask OUT_DIR/masks
                        np.where(batch_masks[j] > 0.5, 255, 0).astype(np.uint8))
            if result.blended is not None:
                write_image(out_dir / "blended" / f"{stem}.png", result.blended[j])
            write_image(out_dir / "completed" / f"{stem}.png", result.completed[j])  # marks done
            summary.completed.append(str(path))
        bar.update(len(names))
    bar.close()
    if summary.resized:
        log.warning("%d of %d images are not %dx%d, the model's size (%s): centre-cropped "
                    "and resized. Faces from `inpaint align` fit this model with `--size %d`.",
                    len(summary.resized), len(pending), size, size, summary.resized_example,
                    size)
    write_sheet(out_dir, list(zip(inputs, stems)), mask, size, sheet_scale)
    summary.seconds = time.time() - t0
    record = {"options": asdict(opts), "mask": mask.describe(), "batch_size": batch_size,
              "blend": blend_result, "out_interval": out_interval, "model": model.identity,
              "inputs": len(inputs), "completed": len(summary.completed),
              "skipped": len(summary.skipped),
              "failed": [{"path": p, "reason": r} for p, r in summary.failed],
              "resized": summary.resized, "seconds": round(summary.seconds, 2),
              "shard": list(shard) if shard else None, "other_shards": summary.other_shards,
              "settings": settings, "finished": True, **(run_options or {})}
    atomic_write_bytes(out_dir / f"run{shard_tag}.json", json.dumps(record, indent=2).encode())
    return summary


def completion_settings(opts: SearchOptions, mask: MaskSpec, model, blend_result: bool) -> dict:
    """Everything that decides the outputs of an image, as JSON values: the search options, the
    mask, the model (by its files' hashes) and blending. (Batch size and output interval do not:
    every image's search is independent and seeded by its name.)"""
    settings = {"options": asdict(opts), **mask.key(), "blend": blend_result,
                "model_sha256": model.identity.get("sha256")}
    return json.loads(json.dumps(settings))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "model_sha256":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_settings(out_dir: Path, settings: dict, overwrite: bool) -> None:
    """RunDirError naming the differences when `out_dir` holds completions made with other
    settings (the run records run.json / run.shard-*.json say which), unless `overwrite`:
    skipping their images as "already done" would mix results, and the record would claim
    settings they were not made with."""
    if overwrite:
        return
    for path in sorted(out_dir.glob("run*.json")):
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(old, dict) or old == settings:
            continue
        before, now = _flatten(old), _flatten(settings)
        diffs = []
        for key in sorted(set(before) | set(now)):
            if before.get(key) == now.get(key):
                continue
            diffs.append("another model" if key == "model_sha256" else
                         f"{key} {before.get(key, '-')} there, {now.get(key, '-')} now")
        raise RunDirError(f"{out_dir} holds completions made with other settings "
                          f"({'; '.join(diffs)}); use --overwrite to redo them with these "
                          "settings, or another --out-dir")


def _ends_mid_line(path: Path) -> bool:
    """Whether the text file at `path` ends without a newline (a write cut short)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # missing or empty
        return False


# sheet.png's columns: (output sub-folder or None for the input, header).
SHEET_COLUMNS = (("masked", "masked"), ("generated", "G(z)"), ("completed", "completed"),
                 ("blended", "blended"), (None, "original"))
# With the automatic scale a face on the sheet is at least this wide, so it reads without zooming.
SHEET_FACE_PX = 192
# ... unless the sheet would exceed this many pixels (hundreds of images): then less magnified.
SHEET_MAX_PIXELS = 40_000_000


def sheet_scale_for(size: int, n_rows: int, n_cols: int) -> int:
    """The automatic magnification of sheet.png: faces of `size` px shown at least SHEET_FACE_PX
    wide, less when the sheet would exceed SHEET_MAX_PIXELS; at least 1."""
    scale = -(-SHEET_FACE_PX // size)
    while scale > 1 and n_rows * (n_cols + 1) * (size * scale) ** 2 > SHEET_MAX_PIXELS:
        scale -= 1
    return scale


def write_sheet(out_dir: Path, items: Sequence[tuple[Path, str]], mask: MaskSpec,
                size: int, scale: int | None = None) -> Path | None:
    """sheet.png: a header line (masked | G(z) | completed | blended | original; a column whose
    outputs do not exist, e.g. blended with --no-blend, is left out) and one row per completed
    image, its file name on the left. Faces are magnified `scale` times (None: sheet_scale_for)."""
    from inpaint.images import contact_sheet, read_image, write_image

    rows, names = [], []
    for path, stem in items:
        if not (out_dir / "completed" / f"{stem}.png").exists():
            continue
        row = {}
        for sub, _ in SHEET_COLUMNS:
            try:
                row[sub] = (_prepare(path, stem, mask, size)[0] if sub is None
                            else read_image(out_dir / sub / f"{stem}.png"))
            except (ImageReadError, MaskError):
                pass
        rows.append(row)
        names.append(Path(path).name)
    if not rows:
        return None
    columns = [(sub, title) for sub, title in SHEET_COLUMNS if any(sub in r for r in rows)]
    scale = scale or sheet_scale_for(size, len(rows), len(columns))
    sheet = contact_sheet([[r.get(sub) for sub, _ in columns] for r in rows],
                          [title for _, title in columns], names, scale=scale)
    path = out_dir / "sheet.png"
    write_image(path, sheet)
    return path


def _networks(model, precision: str):
    """The model's networks computing in the search precision."""
    from inpaint.models import cast_networks

    policy = "float32" if precision == "float32" else "mixed_bfloat16"
    return cast_networks(model.generator, model.discriminator, model.config.model, policy)
