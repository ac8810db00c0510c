"""Training the encoder that proposes the latent code for a completion: E(masked face, mask) -> z,
trained so that G(E(x, M)) is close to the face x, for a fixed, already trained generator G. The
network, its proposal and its file in the model directory are inpaint.models' (build_encoder,
propose, export_with_encoder); the checkpoint folders inpaint.checkpoints'.

The search (inpaint.search) then starts from E's proposal instead of a random z, so it needs far
fewer iterations (measured: docs/search.md). The encoder is trained on two kinds of pairs per batch:
  - generated faces x = G(z) with z ~ U[-1, 1]^d, where the answer z is known: an L2 loss on z;
  - real faces, whose hole is known at training time (the mask is ours): an L1 loss on G(E(x)).
Both use random masks of the kinds users ask for (centre holes, halves, random pixels, boxes).

A run directory holds encoder.json (the settings and the generator they are for), checkpoints/
(resumable), metrics.jsonl, and at the end model/: the generator's model directory with
encoder.keras added (model.json lists its checksum and what it was trained for).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from inpaint import __version__
from inpaint.checkpoints import CheckpointedTrainer, load_optimizer_arrays, optimizer_arrays
from inpaint.config import DataConfig, EncoderConfig, ModelConfig
from inpaint.data import load_face_dataset
from inpaint.errors import Interrupted, ResourceError, RunDirError, UsageError
from inpaint.files import atomic_write_bytes
from inpaint.hardware import resolve_precision
from inpaint.images import to_float
from inpaint.models import (
    build_encoder,
    cast_network,
    encoder_input,
    export_with_encoder,
    first_non_finite_weight,
)
from inpaint.records import JsonlLog, lock_folder

log = logging.getLogger(__name__)

SETTINGS_FILE = "encoder.json"


# ----------------------------------------------------------------------------- training masks

TRAINING_MASK_KINDS = ("center", "half", "random", "box", "band")


def training_masks(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n random masks (n, size, size) float32, 1 = known, of the kinds users ask for, each kind
    equally often: a centred square hole of random side (25-75% of the image, jittered), a half
    (left/right/top/bottom), random missing pixels (50-95% missing), a random box, and a
    horizontal band (eyes, mouth)."""
    masks = np.ones((n, size, size), np.float32)
    kinds = rng.integers(0, len(TRAINING_MASK_KINDS), n)
    for i, k in enumerate(kinds):
        kind = TRAINING_MASK_KINDS[k]
        if kind == "center":
            side = int(rng.uniform(0.25, 0.75) * size)
            c = size // 2 + rng.integers(-size // 16, size // 16 + 1, 2)
            y0, x0 = np.clip(c - side // 2, 0, size - side)
            masks[i, y0:y0 + side, x0:x0 + side] = 0.0
        elif kind == "half":
            half, side = size // 2, rng.integers(4)
            region = [np.s_[:, :half], np.s_[:, half:], np.s_[:half, :], np.s_[half:, :]][side]
            masks[i][region] = 0.0
        elif kind == "random":
            masks[i][rng.random((size, size)) < rng.uniform(0.5, 0.95)] = 0.0
        elif kind == "box":
            h, w = (rng.uniform(0.15, 0.6, 2) * size).astype(int) + 1
            y0, x0 = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            masks[i, y0:y0 + h, x0:x0 + w] = 0.0
        else:  # band
            h = int(rng.uniform(0.12, 0.3) * size) + 1
            y0 = rng.integers(size // 5, size - h - size // 8)
            masks[i, y0:y0 + h, size // 8:size - size // 8] = 0.0
    return masks


# ----------------------------------------------------------------------------- the trainer

class EncoderTrainer(CheckpointedTrainer):
    """The encoder, its optimizer and the compiled train step for one frozen generator;
    checkpoints in inpaint.checkpoints' folders (restore_latest, damaged ones set aside)."""

    def __init__(self, generator: keras.Model, model_cfg: ModelConfig, cfg: EncoderConfig):
        self.cfg = cfg.validate()
        self.precision = resolve_precision(cfg.precision, training=True)
        self.generator = cast_network(generator, self.precision)
        self.model_cfg = model_cfg
        self.encoder = build_encoder(model_cfg, cfg.filters, self.precision)
        self.opt = keras.optimizers.Adam(cfg.lr, beta_1=cfg.beta1)
        self.opt.build(self.encoder.trainable_variables)
        self.step = 0
        self.damaged: set[str] = set()
        self._train = tf.function(self._train_fn)

    def start_from(self, model) -> None:
        """Take the encoder weights of `model` (a LoadedModel; _check_init has checked them)."""
        self.encoder.set_weights(model.encoder.get_weights())

    def _train_fn(self, z, fake_masks, real, real_masks):
        fake = tf.stop_gradient(self.generator(z, training=False))
        x = tf.concat([fake, real], 0)
        m = tf.concat([fake_masks, real_masks], 0)
        n = tf.shape(z)[0]
        with tf.GradientTape() as tape:
            zhat = self.encoder(encoder_input(x, m), training=True)
            recon = tf.cast(self.generator(zhat, training=False), tf.float32)
            err = tf.abs(recon - x)  # (B, S, S, C)
            known = m[..., None]
            known_l1 = tf.reduce_sum(known * err, [1, 2, 3]) / (
                tf.reduce_sum(known, [1, 2, 3]) * x.shape[-1] + 1.0)
            image_loss = tf.reduce_mean(known_l1) + tf.reduce_mean(err)
            latent_loss = tf.reduce_mean(tf.square(zhat[:n] - z))
            loss = image_loss + self.cfg.latent_weight * latent_loss
        grads = tape.gradient(loss, self.encoder.trainable_variables)
        self.opt.apply_gradients(zip(grads, self.encoder.trainable_variables))
        return {"loss": loss, "image_l1": tf.reduce_mean(err), "known_l1": tf.reduce_mean(known_l1),
                "latent_l2": latent_loss}

    def batch(self, faces: np.ndarray) -> tuple[np.ndarray, ...]:
        """The inputs of step `self.step`, a function of the seed and the step only (so a resumed
        run sees what an uninterrupted one would): z, their masks, real faces, their masks."""
        rng = np.random.default_rng([self.cfg.seed, self.step])
        half, size = self.cfg.batch_size // 2, self.model_cfg.image_size
        z = rng.uniform(-1.0, 1.0, (half, self.model_cfg.z_dim)).astype(np.float32)
        real = faces[rng.integers(0, len(faces), half)]
        flip = rng.random(half) < 0.5
        real = np.where(flip[:, None, None, None], real[:, :, ::-1], real)
        return (z, training_masks(rng, half, size), to_float(real),
                training_masks(rng, half, size))

    def train_step(self, faces: np.ndarray) -> dict[str, float]:
        losses = {k: float(v) for k, v in self._train(*self.batch(faces)).items()}
        self.step += 1
        return losses

    # -- checkpoints (inpaint.checkpoints' layout: ckpt-<step> folders, written whole) -------

    def save_checkpoint(self, ckpt_root: Path, keep: int) -> Path:
        return self._save_checkpoint(ckpt_root, keep, self._write_state, {})

    def _write_state(self, folder: Path) -> None:
        self.encoder.save_weights(folder / "encoder.weights.h5")
        np.savez(folder / "state.npz", **optimizer_arrays("opt", self.opt))

    def load_checkpoint(self, path: Path) -> None:
        """Restore the encoder, its optimizer and the step; RunDirError when a weight is NaN or
        infinite or the optimizer state does not fit."""
        self.encoder.load_weights(path / "encoder.weights.h5")
        if (bad := first_non_finite_weight(self.encoder)) is not None:
            raise RunDirError(f"weight {bad} holds NaN or infinite values")
        with np.load(path / "state.npz", allow_pickle=False) as state:
            load_optimizer_arrays(state, "opt", self.opt, path)
        self.step = int(json.loads((path / "state.json").read_text())["step"])


# ----------------------------------------------------------------------------- the run

@dataclass
class EncoderResult:
    run_dir: Path
    model_dir: Path | None
    step: int
    seconds: float
    last: dict


def _check_init(init_from, model_cfg: ModelConfig, cfg: EncoderConfig) -> None:
    """UsageError unless `init_from` has an encoder of the shape this run builds."""
    if init_from.encoder is None:
        raise UsageError(f"--init-from {init_from.path} has no encoder to start from")
    want = [tuple(w.shape) for w in build_encoder(model_cfg, cfg.filters).weights]
    have = [tuple(w.shape) for w in init_from.encoder.weights]
    if want != have:
        raise UsageError(f"the encoder of {init_from.path} is not one of {cfg.filters} filters "
                         f"for {model_cfg.image_size}-pixel faces; give its --filters")


def _settings(model, cfg: EncoderConfig, datasets: Sequence[Path]) -> dict:
    return {"encoder": dataclasses.asdict(cfg), "generator": model.identity,
            "datasets": [str(d) for d in datasets], "inpaint_version": __version__}


def _open_settings(run_dir: Path, settings: dict, cfg: EncoderConfig, write: bool = True) -> None:
    """Write encoder.json for a new run (with `write`); for a resumed one check it trains the
    same encoder for the same generator (RunDirError naming what differs)."""
    path = run_dir / SETTINGS_FILE
    if not path.is_file():
        if not write:
            return
        atomic_write_bytes(path, json.dumps(settings, indent=2).encode("utf-8"))
        return
    try:
        old = json.loads(path.read_text("utf-8"))
        old_cfg, old_sha = old["encoder"], old["generator"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path} is unreadable ({exc}); use a new --out-dir") from None
    if old_sha.get("generator.keras") != settings["generator"]["sha256"].get("generator.keras"):
        raise RunDirError(f"{run_dir} trains an encoder for another generator; use a new "
                          "--out-dir or the same --model")
    differ = [k for k, v in dataclasses.asdict(cfg).items()
              if k not in EncoderConfig.RESUMABLE and old_cfg.get(k) != v]
    if differ:
        raise RunDirError(f"{run_dir} was started with other settings ({', '.join(differ)}); "
                          "resume it with the same ones or use a new --out-dir")


def training_bytes(model_cfg: ModelConfig, cfg: EncoderConfig) -> int:
    """About the memory a training step of the encoder needs: its weights four times over (the
    weights, their gradients and Adam's two moments, float32) and each convolution's output three
    times (forward, activation, gradient) for a batch, float32. The generator's share is fixed
    and small. The default (32 filters, batch 64) comes to about 71 MB; 100,000 filters to 168 TB."""
    c_in, side, weights, activations = model_cfg.channels + 1, model_cfg.image_size, 0, 0
    for i in range(model_cfg.n_up):
        c_out, side = cfg.filters * 2 ** i, max(1, side // 2)
        weights += model_cfg.kernel_size ** 2 * c_in * c_out + c_out
        activations += side * side * c_out
        c_in = c_out
    weights += side * side * c_in * model_cfg.z_dim + model_cfg.z_dim
    return 4 * (4 * weights + 3 * cfg.batch_size * activations)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(model_cfg: ModelConfig, cfg: EncoderConfig) -> None:
    """ResourceError, naming the options to lower, when a training step would need more memory
    than the machine has: refused before anything is loaded, not as TensorFlow's OOM later."""
    need, have = training_bytes(model_cfg, cfg), _physical_memory()
    if have is not None and need > have:
        raise ResourceError(
            f"an encoder of {cfg.filters} filters at batch size {cfg.batch_size} needs about "
            f"{_size(need)} to train; this machine has {_size(have)}: lower --filters (default "
            f"{EncoderConfig.filters}) or --batch-size")


def _size(n: float) -> str:
    """Bytes in words: 71.0 MB, 168.2 TB."""
    if n < 1000:
        return f"{n:.0f} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} PB"


def train_encoder(model, datasets: Sequence[str | Path], run_dir: str | Path,
                  cfg: EncoderConfig | None = None, *, progress: bool = False,
                  init_from=None) -> EncoderResult:
    """Train (or resume) an encoder for `model` (a LoadedModel) on the aligned faces below
    `datasets`, into `run_dir`; export run_dir/model at the end. `init_from`: a LoadedModel whose
    encoder a new run starts from (fine-tuning it for a generator trained on from that model's;
    the same --filters); a resumed run goes on from its checkpoint. Ctrl-C saves a checkpoint and
    raises Interrupted."""
    cfg = (cfg or EncoderConfig()).validate()
    check_fits(model.config.model, cfg)
    run_dir, datasets = Path(run_dir), [Path(d) for d in datasets]
    with lock_folder(run_dir, "train-encoder"):
        settings = _settings(model, cfg, datasets)
        if init_from is not None:
            _check_init(init_from, model.config.model, cfg)
            settings["init_from"] = init_from.identity
        _open_settings(run_dir, settings, cfg, write=False)  # a mismatch fails before loading
        faces = load_face_dataset(datasets, model.config.model.image_size, DataConfig(),
                                  progress=progress).images
        _open_settings(run_dir, settings, cfg)
        trainer = EncoderTrainer(model.generator, model.config.model, cfg)
        ckpt_root = run_dir / "checkpoints"
        EncoderTrainer.remove_stale_temporaries(ckpt_root)  # what a killed run was writing
        if (resumed := trainer.restore_latest(ckpt_root)) is not None:
            log.info("resumed from %s", resumed)
        elif init_from is not None:
            trainer.start_from(init_from)
        t0, last = time.time(), {}
        with JsonlLog(run_dir / "metrics.jsonl", flush=True) as metrics:
            try:
                last = _loop(trainer, faces, ckpt_root, metrics, progress)
            except KeyboardInterrupt:
                trainer.save_checkpoint(ckpt_root, cfg.keep_checkpoints)
                raise Interrupted(f"stopped at step {trainer.step}; run the same command to "
                                  "resume") from None
            except (tf.errors.ResourceExhaustedError, MemoryError):
                raise ResourceError(
                    f"out of memory at step {trainer.step} (filters {cfg.filters}, batch size "
                    f"{cfg.batch_size}); lower --filters or --batch-size and train into a new "
                    "--out-dir (the checkpoints so far are kept)") from None
        trainer.save_checkpoint(ckpt_root, cfg.keep_checkpoints)
        out = export_with_encoder(model, trainer.encoder, run_dir / "model", {
            "steps": trainer.step, "filters": cfg.filters, "precision": trainer.precision,
            "datasets": [str(d) for d in datasets], "training_images": int(len(faces)),
            "last_losses": last})
        return EncoderResult(run_dir, out, trainer.step, time.time() - t0, last)


def _loop(trainer: EncoderTrainer, faces: np.ndarray, ckpt_root: Path, metrics,
          progress: bool) -> dict:
    cfg, last = trainer.cfg, {}
    with tqdm(total=cfg.steps, initial=min(trainer.step, cfg.steps), disable=not progress,
              unit="step", desc="encoder") as bar:
        while trainer.step < cfg.steps:
            t = time.time()
            last = trainer.train_step(faces)
            if not all(math.isfinite(v) for v in last.values()):
                raise RunDirError(f"the encoder's loss became NaN or infinite at step "
                                  f"{trainer.step}; resume from the last checkpoint with a lower "
                                  "lr")
            if trainer.step % cfg.log_every == 0:
                metrics.write({"step": trainer.step, "seconds": round(time.time() - t, 4),
                               **{k: round(v, 6) for k, v in last.items()}})
            if trainer.step % cfg.checkpoint_every == 0:
                trainer.save_checkpoint(ckpt_root, cfg.keep_checkpoints)
            bar.update(1)
            bar.set_postfix(image_l1=f"{last['image_l1']:.3f}", z=f"{last['latent_l2']:.3f}")
    return last
