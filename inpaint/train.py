"""Training the DCGAN: the graph-compiled GAN step, the loop, checkpoints, samples and summaries.

A run directory holds:
    config.toml            the resolved config (what a resumed run and later commands read)
    run.json               dataset, image counts, skipped files, timings
    checkpoints/ckpt-NNNNNNN/   weights (and the generator's weight average), optimizer state,
                           fixed sample z, RNG state, step
    samples/step_NNNNNNN.png    8x8 grid of G(fixed z)
    logs/                  TensorBoard scalars and sample images
    metrics.jsonl          one line per `log_every` steps
    model/                 the exported inference model (see models.py); its generator is the
                           weight average (train.ema_decay) when the run keeps one

Checkpoint folders (written whole, pruned, damaged ones set aside) are inpaint.checkpoints'.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaint import __version__
from inpaint.checkpoints import (
    CKPT_RE,
    CheckpointedTrainer,
    list_checkpoints,
    load_optimizer_arrays,
    optimizer_arrays,
)
from inpaint.config import RESUMABLE_KEYS, Config, diff_configs, load_config, save_config
from inpaint.errors import (
    ConfigError,
    DataError,
    Diverged,
    Interrupted,
    ModelError,
    RunDirError,
    WorkerLost,
)
from inpaint.files import atomic_write_bytes
from inpaint.hardware import resolve_precision
from inpaint.images import make_grid, to_uint8, write_image
from inpaint.records import LOCK_NAME, append_jsonl

log = logging.getLogger(__name__)

N_SAMPLES = 64  # the 8x8 sample grid


# ----------------------------------------------------------------------------- run directory


def prepare_run_dir(run_dir: str | Path, cfg: Config, write: bool = True) -> Config:
    """Create `run_dir` for `cfg`, or check that an existing run there can continue with it.

    An existing run continues only if `cfg` differs from its stored config in scheduling keys
    (epochs, checkpoint/sample/log intervals, strategy); any other difference is a RunDirError
    naming the keys. A non-empty folder that holds no run is refused too. Writes the resolved
    config. `write=False` (the non-chief workers of a multi-worker run, which write nothing)
    only checks the stored config, if the chief has written one."""
    run_dir = Path(run_dir)
    stored_path = run_dir / "config.toml"
    if stored_path.is_file():
        try:
            stored = load_config(stored_path)
        except ConfigError as exc:
            raise RunDirError(f"{run_dir} holds a run whose config is invalid: {exc}") from None
        conflicts = [d for d in diff_configs(stored, cfg) if d[0] not in RESUMABLE_KEYS]
        if conflicts:
            lines = "; ".join(f"{k}: run has {a!r}, asked for {b!r}" for k, a, b in conflicts)
            raise RunDirError(f"{run_dir} holds a run with a different config ({lines}). "
                              "Resume it without changing these, or train into a new --out-dir.")
    if not write:
        return cfg
    if not stored_path.is_file() and run_dir.exists() and any(
            p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise RunDirError(f"{run_dir} is not empty and holds no inpaint run (no config.toml); "
                          "choose a new or empty --out-dir directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, stored_path)
    return cfg


def stored_config(run_dir: str | Path) -> Config | None:
    """The config of the run in `run_dir`, or None if there is no run there yet."""
    path = Path(run_dir) / "config.toml"
    return load_config(path) if path.is_file() else None


# ----------------------------------------------------------------------------- distribution


def tf_config_task() -> tuple[str | None, int, dict]:
    """(task type, task index, cluster) from the TF_CONFIG environment variable that
    tf.distribute reads; (None, 0, {}) when it is unset. ConfigError when it is malformed."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None, 0, {}
    try:
        spec = json.loads(text)
        cluster, task = spec.get("cluster", {}), spec.get("task", {})
        kind, index = task.get("type"), int(task.get("index", 0))
        if not isinstance(cluster, dict) or not isinstance(kind, str) \
                or index >= len(cluster.get(kind, [])) or index < 0:
            raise ValueError
    except (ValueError, TypeError, AttributeError):
        raise ConfigError('TF_CONFIG must be JSON like {"cluster": {"worker": ["host1:port", '
                          '"host2:port"]}, "task": {"type": "worker", "index": 0}} with the task '
                          "in the cluster; got " + text[:200]) from None
    return kind, index, cluster


def is_chief(strategy: str) -> bool:
    """Whether this process writes the run directory. Only multi-worker runs have others: there
    the chief is task "chief", or worker 0 when the cluster names no chief."""
    if strategy != "multi-worker":
        return True
    kind, index, cluster = tf_config_task()
    return kind in (None, "chief") or (kind == "worker" and index == 0 and "chief" not in cluster)


_STRATEGIES: dict = {}  # one per kind and process, see make_strategy


def make_strategy(name: str):
    """The tf.distribute strategy for `train.strategy`: None for "default" (no strategy: the plain
    single-device step); "mirrored": MirroredStrategy over the local GPUs, or over the logical
    CPU devices when there is none; "multi-worker": MultiWorkerMirroredStrategy over the cluster
    in TF_CONFIG. Call it before TensorFlow runs anything (collectives are configured at start).

    A process gets one strategy of each kind, reused by later calls: every new MirroredStrategy
    numbers its collectives from the same keys, and TensorFlow aborts a collective whose key an
    earlier one of another shape used ("Shape mismatch in the collective instance")."""
    import tensorflow as tf

    if name == "default":
        return None
    if name in _STRATEGIES:
        return _STRATEGIES[name]
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    elif name == "multi-worker":
        if tf_config_task()[0] is None:
            raise ConfigError("train.strategy = 'multi-worker' takes the machines from TF_CONFIG, "
                              "which is not set (see README, Beyond one machine)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        raise ConfigError(f"unknown train.strategy {name!r}")
    _STRATEGIES[name] = strategy
    return strategy


def _batchnorm_layers(*models) -> list:
    import keras

    return [layer for m in models for layer in m.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


# ----------------------------------------------------------------------------- the GAN


class GANTrainer(CheckpointedTrainer):
    """Generator, discriminator, their optimizers and the compiled training step.

    Losses are those of the reference DCGAN: the discriminator's sigmoid cross-entropy on real
    (label 1) and generated (label 0) batches, and the non-saturating generator loss -log D(G(z)),
    minimised `g_steps` times per discriminator update with the same z.

    With a tf.distribute `strategy` the networks and optimizers are mirrored on its replicas and
    each step splits the global batch (and its z) over them; the optimizers sum the replicas'
    gradients, so the update is that of the whole batch. Without one (the default) the step runs
    on one device as a plain tf.function."""

    def __init__(self, cfg: Config, strategy=None):
        import keras
        import tensorflow as tf

        from inpaint.models import build_generator, build_models
        from inpaint.optimizers import Adam

        self.cfg = cfg
        self.strategy = strategy
        t = cfg.train
        keras.utils.set_random_seed(t.seed)
        self.precision = resolve_precision(t.precision, training=True)  # "auto" decided here

        def adam():
            opt = Adam(learning_rate=t.lr, beta_1=t.beta1, epsilon=t.adam_epsilon)
            if self.precision == "mixed_float16":  # float16 gradients underflow without scaling
                opt = keras.optimizers.LossScaleOptimizer(opt)
            return opt

        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            self.generator, self.discriminator = build_models(cfg)
            if strategy is not None:
                # Keras 3 batch norm normalises each replica's share with that share's moments
                # and lets every replica write its own copy of the moving averages, which then
                # drift apart (tests/test_distribute.py). Synchronised, the moments are
                # all-reduced: every replica normalises with the global batch's, as one device.
                for layer in _batchnorm_layers(self.generator, self.discriminator):
                    layer.synchronized = True
            self.g_opt, self.d_opt = adam(), adam()
            # The weight average of the generator (train.ema_decay), updated after every step.
            self.ema_generator = (build_generator(cfg.model, self.precision) if t.ema_decay > 0
                                  else None)
            if self.ema_generator is not None:
                self.ema_generator.set_weights(self.generator.get_weights())
            self.g_opt.build(self.generator.trainable_variables)
            self.d_opt.build(self.discriminator.trainable_variables)
        self.rng = tf.random.Generator.from_seed(t.seed)
        self.sample_z = np.random.default_rng([t.seed, 1]).uniform(
            -1.0, 1.0, (N_SAMPLES, cfg.model.z_dim)).astype(np.float32)
        self.step = 0
        self.last_r1: float | None = None  # the R1 penalty of the last step that added it
        # The average's warm-up forgets a random start; a warm start (init_from_model) is a
        # trained model's average already, which the warm-up would forget in a few hundred steps.
        self.ema_warmup = True
        self.damaged: set[str] = set()  # checkpoint names restore_latest could not load
        self._train_step = tf.function(self._step)
        self._distributed_train_step = tf.function(self._distributed_step)
        self._ema_step = tf.function(self._update_ema,
                                     input_signature=[tf.TensorSpec([], tf.float32)])

    def ema_decay(self) -> float:
        """d of the average's next update: min(ema_decay, (1 + step) / (10 + step)) while it
        warms up (the warm-up of TensorFlow's ExponentialMovingAverage with num_updates, so the
        average forgets the random initial weights); ema_decay from the first step of a warm
        start."""
        t = self.cfg.train
        return min(t.ema_decay, (1 + self.step) / (10 + self.step)) if self.ema_warmup \
            else t.ema_decay

    def _update_ema(self, d):
        """ema <- d * ema + (1 - d) * G for every generator variable (batch-norm statistics
        included); `d` a float32 scalar tensor (input_signature: traced once)."""
        import tensorflow as tf

        for e, v in zip(self.ema_generator.weights, self.generator.weights):
            e.assign(d * e + (1.0 - d) * tf.cast(v, e.dtype))

    def _step(self, real, r1=False):
        import tensorflow as tf

        z = self.rng.uniform([tf.shape(real)[0], self.cfg.model.z_dim], -1.0, 1.0)
        return self._update(real, z, tf.reduce_mean, r1)

    def r1_due(self) -> bool:
        """Whether the next step adds the R1 penalty (train.r1_gamma > 0, every r1_every steps
        counted from step 0: a function of the step, so a resumed run keeps the schedule)."""
        t = self.cfg.train
        return t.r1_gamma > 0 and self.step % t.r1_every == 0

    def _update(self, real, z, mean, r1=False):
        """The GAN update on `real` and `z`; `mean` reduces per-example values (B, 1) to the
        batch mean (on one replica: its share's sum over the global batch size). With `r1`
        (a Python bool: traced apart) the discriminator's loss gains the lazy R1 penalty,
        r1_every * r1_gamma / 2 * E[|grad_x D(real)|^2]."""
        import tensorflow as tf

        from inpaint.layers import repeated_moving_updates

        G, D = self.generator, self.discriminator
        bce = tf.nn.sigmoid_cross_entropy_with_logits
        scaled = self.precision == "mixed_float16"
        g_steps = self.cfg.train.g_steps
        # G(z) is computed once for the discriminator's update and the first generator update:
        # G's weights do not change in between, so the two forwards were equal. Its tape is kept
        # for the generator's gradient, and its batch norms' moving statistics take the two
        # updates the two forwards made (same batch moments).
        with tf.GradientTape() as g_tape, repeated_moving_updates(1 + min(g_steps, 1)):
            fake = G(z, training=True)
        out = {}
        with tf.GradientTape() as tape:
            if r1:  # the real batch's forward, watched for the gradient by its pixels
                real = tf.convert_to_tensor(real, tf.float32)
                with tf.GradientTape() as x_tape:
                    x_tape.watch(real)
                    real_logits = D(real, training=True)
                    real_sum = tf.reduce_sum(tf.cast(real_logits, tf.float32))
                grad_x = x_tape.gradient(real_sum, real)
                grad_sq = tf.reduce_sum(tf.square(grad_x), axis=[1, 2, 3])[:, None]
                penalty = mean(0.5 * self.cfg.train.r1_gamma * grad_sq)
                out["r1"] = penalty
            else:
                real_logits = D(real, training=True)
            fake_logits = D(fake, training=True)
            d_loss = (mean(bce(tf.ones_like(real_logits), real_logits))
                      + mean(bce(tf.zeros_like(fake_logits), fake_logits)))
            d_total = d_loss + self.cfg.train.r1_every * penalty if r1 else d_loss
            d_obj = self.d_opt.scale_loss(d_total) if scaled else d_total
        grads = tape.gradient(d_obj, D.trainable_variables)
        self.d_opt.apply(grads, D.trainable_variables)
        g_loss = tf.constant(0.0)
        for i in range(g_steps):
            with tf.GradientTape() as tape:
                if i == 0:
                    tape.watch(fake)
                    logits = D(fake, training=True)
                else:
                    logits = D(G(z, training=True), training=True)
                g_loss = mean(bce(tf.ones_like(logits), logits))
                g_obj = self.g_opt.scale_loss(g_loss) if scaled else g_loss
            if i == 0:  # back through D to G(z), then through G's kept tape to its weights
                grads = g_tape.gradient(fake, G.trainable_variables,
                                        output_gradients=tape.gradient(g_obj, fake))
            else:
                grads = tape.gradient(g_obj, G.trainable_variables)
            self.g_opt.apply(grads, G.trainable_variables)
        return {"d_loss": d_loss, "g_loss": g_loss,
                "d_real": mean(tf.sigmoid(real_logits)),
                "d_fake": mean(tf.sigmoid(fake_logits)), **out}

    def _distributed_step(self, real, z, r1=False):
        """`real`, `z`: per-replica shares of the global batch. Each replica's losses are its
        examples' sum divided by the global batch size (tf.nn.compute_average_loss), so the
        replicas' gradients, which the optimizers sum, are those of the global mean."""
        import tensorflow as tf

        def replica_mean(per_example):
            return tf.nn.compute_average_loss(tf.reshape(per_example, [-1]))

        def replica_step(real, z):
            return self._update(real, z, replica_mean, r1)

        out = self.strategy.run(replica_step, args=(real, z))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in out.items()}

    def _split_batch(self, real):
        """The global batch and its z -> per-replica rows, each on its replica's device. z comes
        from the host's generator, as the single-device step draws it, so every number of
        replicas trains on the same z (workers share the seed, so they draw the same)."""
        import tensorflow as tf

        real = tf.convert_to_tensor(real, tf.float32)
        b, n = int(real.shape[0]), self.strategy.num_replicas_in_sync
        if b % n:
            raise ConfigError(f"a batch of {b} cannot be split evenly over {n} replicas; make "
                              f"train.batch_size a multiple of {n}")
        z = self.rng.uniform([b, self.cfg.model.z_dim], -1.0, 1.0)
        per = b // n

        def share(ctx):
            i = ctx.replica_id_in_sync_group
            return real[i * per:(i + 1) * per], z[i * per:(i + 1) * per]

        return self.strategy.experimental_distribute_values_from_function(share)

    def train_step(self, real) -> dict[str, float]:
        """One discriminator update and `g_steps` generator updates on `real`:
        (B, S, S, C) float32 in [-1, 1] (the global batch). Returns the losses as floats."""
        r1 = self.r1_due()
        if self.strategy is None:
            out = self._train_step(real, r1)
        else:
            out = self._distributed_train_step(*self._split_batch(real), r1)
        self.step += 1
        if self.ema_generator is not None:
            self._ema_step(self.ema_decay())
        out = {k: float(v) for k, v in out.items()}
        # Every step reports the latest penalty measured (none until a step of this session added
        # it), so the logged steps, which need not be R1 steps, show it.
        if "r1" in out:
            self.last_r1 = out["r1"]
        elif self.last_r1 is not None:
            out["r1"] = self.last_r1
        return out

    @property
    def output_generator(self):
        """The generator that is sampled and exported: the weight average when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def samples(self) -> np.ndarray:
        """G(fixed z) in inference mode (the averaged G if train.ema_decay > 0):
        (64, S, S, C) uint8."""
        return to_uint8(self.output_generator(self.sample_z, training=False).numpy())

    def init_from_model(self, path: str | Path) -> dict:
        """Start from the weights of an exported model (the shipped one, another run's model/)
        with fresh optimizer state: warm start. The model's architecture must equal this run's
        (`model` config section); ConfigError naming the differing keys otherwise. Returns the
        model's identity for the run record."""
        from inpaint.models import load_model

        loaded = load_model(path)
        theirs, ours = loaded.config.to_dict()["model"], self.cfg.to_dict()["model"]
        differ = [f"model.{k}: model has {theirs[k]!r}, run has {ours[k]!r}"
                  for k in ours if theirs.get(k) != ours[k]]
        if differ:
            raise ConfigError(f"--init-from {path}: the model's architecture differs from this "
                              f"run's ({'; '.join(differ)}); train with its config "
                              f"({loaded.path / 'config.toml'})")
        for src, dst in ((loaded.generator, self.generator),
                         (loaded.discriminator, self.discriminator),
                         (loaded.generator, self.ema_generator)):
            if dst is not None:
                dst.set_weights([np.asarray(w).astype(v.dtype) for w, v in
                                 zip(src.get_weights(), dst.weights)])
        self.ema_warmup = False  # an exported generator is an average already: keep it
        return loaded.identity

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self, ckpt_root: Path, keep: int, epoch: int) -> Path:
        """Write `ckpt_root/ckpt-<step>` whole; keep the newest `keep`. Returns its path."""
        return self._save_checkpoint(ckpt_root, keep, self._write_state, {"epoch": epoch})

    def _write_state(self, folder: Path) -> None:
        self.generator.save_weights(folder / "generator.weights.h5")
        self.discriminator.save_weights(folder / "discriminator.weights.h5")
        if self.ema_generator is not None:
            self.ema_generator.save_weights(folder / "generator_ema.weights.h5")
        np.savez(folder / "state.npz", sample_z=self.sample_z, rng_state=self.rng.state.numpy(),
                 **optimizer_arrays("g_opt", self.g_opt), **optimizer_arrays("d_opt", self.d_opt))

    def load_checkpoint(self, path: Path) -> None:
        """Restore weights (and the generator average), optimizer state, RNG, sample z and step
        from a checkpoint folder. RunDirError when its weights hold NaN or infinite values."""
        from inpaint.models import first_non_finite_weight

        self.generator.load_weights(path / "generator.weights.h5")
        self.discriminator.load_weights(path / "discriminator.weights.h5")
        if self.ema_generator is not None:
            if (path / "generator_ema.weights.h5").is_file():
                self.ema_generator.load_weights(path / "generator_ema.weights.h5")
            else:  # a checkpoint of a run without the average: it starts here
                log.info("%s has no generator average; starting it from the generator", path)
                self.ema_generator.set_weights(self.generator.get_weights())
        for net in (self.generator, self.discriminator, self.ema_generator):
            if net is not None and (bad := first_non_finite_weight(net)) is not None:
                raise RunDirError(f"weight {bad} holds NaN or infinite values")
        with np.load(path / "state.npz", allow_pickle=False) as state:
            self.sample_z = state["sample_z"]
            self.rng.reset(state["rng_state"])
            for tag, opt in (("g_opt", self.g_opt), ("d_opt", self.d_opt)):
                load_optimizer_arrays(state, tag, opt, path)
        self.step = int(json.loads((path / "state.json").read_text())["step"])


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    images_used: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed_from: int = 0
    model_dir: Path | None = None
    seconds: float = 0.0


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines after `step` (written by a run that died before its next checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            continue  # a half-written last line
    atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())


def train(dataset_dir: str | Path | Sequence[str | Path], run_dir: str | Path, cfg: Config, *,
          init_from: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume) the run in `run_dir` on the images below `dataset_dir` (one folder or
    several) with `cfg`, then export `run_dir/model`. The run directory is created, or checked
    to hold a run `cfg` may continue (`prepare_run_dir`).

    `init_from`: an exported model directory whose weights a new run starts from, with fresh
    optimizer state (warm start). A run that already has a checkpoint resumes from it instead;
    one killed before its first checkpoint starts again from the model its run.json names.

    Ctrl-C saves a checkpoint and raises Interrupted; re-running resumes from it.

    With `train.strategy` "mirrored" or "multi-worker" the steps run on tf.distribute replicas.
    In a multi-worker run every worker runs this with the same dataset and `run_dir` (a folder
    they all see); only the chief writes to it (checkpoints, samples, logs, the model)."""
    t0 = time.time()
    run = _open_run(dataset_dir, Path(run_dir), cfg, init_from, progress)
    _train_loop(run, progress)
    return _finish_run(run, t0)


@dataclass
class _Run:
    """What the steps of one training session share."""

    run_dir: Path
    cfg: Config
    chief: bool
    data: object  # data.FaceDataset
    trainer: GANTrainer
    start: int
    steps_per_epoch: int
    total: int
    record: dict
    writer: object  # tf.summary writer

    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def checkpoint(self) -> Path:
        t = self.cfg.train
        return self.trainer.save_checkpoint(self.ckpt_root, t.keep_checkpoints,
                                            self.epoch_of(self.trainer.step))

    def write_samples(self) -> None:
        import tensorflow as tf

        grid = make_grid(self.trainer.samples(), ncols=8)
        write_image(self.run_dir / "samples" / f"step_{self.trainer.step:07d}.png", grid)
        with self.writer.as_default(step=self.trainer.step):
            tf.summary.image("samples", grid[None], max_outputs=1)


def _open_run(dataset_dir, run_dir: Path, cfg: Config, init_from, progress: bool) -> _Run:
    """Strategy, run directory, data, networks (restored, warm-started or new), run.json."""
    import tensorflow as tf

    t = cfg.train
    strategy = make_strategy(t.strategy)  # first: multi-worker collectives are set up at start
    chief = is_chief(t.strategy)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if t.batch_size % replicas:
        raise ConfigError(f"train.batch_size {t.batch_size} cannot be split evenly over "
                          f"{replicas} replicas; use a multiple of {replicas}")
    prepare_run_dir(run_dir, cfg, write=chief)
    roots = [dataset_dir] if isinstance(dataset_dir, (str, Path)) else list(dataset_dir)
    data = _load_data(roots, cfg, progress)
    trainer = GANTrainer(cfg, strategy)
    if chief:
        trainer.remove_stale_temporaries(run_dir / "checkpoints")
    init_record = _restore_or_init(trainer, run_dir, init_from, replicas)
    start = trainer.step
    if strategy is not None:
        _check_workers_agree(strategy, start, run_dir)
    if chief:
        _truncate_metrics(run_dir / "metrics.jsonl", start)
    steps_per_epoch = len(data) // t.batch_size
    record = {
        "dataset": [str(Path(r).resolve()) for r in roots], "files": data.n_files,
        "images": len(data), "skipped": len(data.skipped),
        "skipped_files": [{"path": p, "reason": r} for p, r in data.skipped[:100]],
        "steps_per_epoch": steps_per_epoch, "total_steps": t.epochs * steps_per_epoch,
        "resumed_from": start, "strategy": t.strategy, "replicas": replicas,
        "precision": trainer.precision, "init_from": init_record,
        "inpaint_version": __version__, "tensorflow_version": tf.__version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if chief:
        atomic_write_bytes(run_dir / "run.json", json.dumps(record, indent=2).encode())
    writer = (tf.summary.create_file_writer(str(run_dir / "logs")) if chief
              else tf.summary.create_noop_writer())
    return _Run(run_dir, cfg, chief, data, trainer, start, steps_per_epoch,
                t.epochs * steps_per_epoch, record, writer)


def _load_data(roots: list, cfg: Config, progress: bool):
    from inpaint.data import load_face_dataset

    data = load_face_dataset(roots, cfg.model.image_size, cfg.data, progress=progress)
    if len(data) < cfg.train.batch_size:
        raise DataError(f"{', '.join(map(str, roots))} has {len(data)} usable images, fewer than "
                        f"the batch size {cfg.train.batch_size}; lower it with --batch-size")
    if data.skipped:
        log.warning("%d of %d files could not be read and are skipped", len(data.skipped),
                    data.n_files)
    return data


def _restore_or_init(trainer: GANTrainer, run_dir: Path, init_from, replicas: int):
    """Resume from the newest loadable checkpoint, else start from `init_from` (or the model
    the run's run.json names), else from scratch. Returns the warm start's record, or None."""
    restored = trainer.restore_latest(run_dir / "checkpoints")
    if restored:
        log.info("resuming from %s (step %d) on %d replica(s)", restored, trainer.step, replicas)
        if init_from is not None:
            log.warning("--init-from %s is ignored: the run resumes from its checkpoint",
                        init_from)
        record = _previous_init(run_dir)
        trainer.ema_warmup = record is None  # a resumed warm start keeps its full decay
        return record
    init_from = init_from if init_from is not None else _previous_init(run_dir, path=True)
    if init_from is None:
        return None
    record = trainer.init_from_model(init_from)
    log.info("starting from the weights of %s (step %s)", record["path"], record["step"])
    return record


def _train_loop(run: _Run, progress: bool) -> None:
    """Steps until the run's total, with logging, samples and checkpoints every so many steps;
    Ctrl-C saves a checkpoint (Interrupted), a lost worker is WorkerLost."""
    import tensorflow as tf
    from tqdm import tqdm

    from inpaint.data import epoch_dataset

    t, trainer = run.cfg.train, run.trainer
    bar = tqdm(total=run.total, initial=run.start, disable=not progress or not run.chief,
               unit="step", dynamic_ncols=True)
    clock = {"t": time.time(), "step": run.start}
    try:
        while trainer.step < run.total:
            epoch = run.epoch_of(trainer.step)
            bar.set_description(f"epoch {epoch + 1}/{t.epochs}")
            batches = epoch_dataset(run.data.images, t.batch_size, t.seed, epoch,
                                    run.cfg.data.flip,
                                    skip_batches=trainer.step - epoch * run.steps_per_epoch)
            for real in batches:
                m = trainer.train_step(real)
                _check_losses(m, trainer.step, run.ckpt_root)
                bar.update(1)
                if run.chief:
                    _periodic(run, m, epoch, bar, clock)
                if trainer.step >= run.total:
                    break
    except tf.errors.OpError as exc:
        if t.strategy != "multi-worker":
            raise
        bar.close()
        found = re.search(r"aborted by: (.*)", exc.message)  # the cause, under TF's trace
        reason = found.group(1).strip() if found else type(exc).__name__
        raise WorkerLost(f"lost contact with another worker after step {trainer.step} ({reason}); "
                         f"restart every worker with the same command to resume from the "
                         f"chief's last checkpoint in {run.ckpt_root}") from None
    except KeyboardInterrupt:
        bar.close()
        if not run.chief:
            raise Interrupted(f"interrupted at step {trainer.step}; this worker writes no "
                              "checkpoints (the chief does)") from None
        path = run.checkpoint()
        run.writer.flush()
        raise Interrupted(f"interrupted at step {trainer.step}; checkpoint saved to {path}. "
                          "Re-run the same command to resume.") from None
    bar.close()


def _periodic(run: _Run, m: dict, epoch: int, bar, clock: dict) -> None:
    """The chief's periodic actions after a step: metrics, sample grids, checkpoints."""
    import tensorflow as tf

    t, step = run.cfg.train, run.trainer.step
    if step % t.log_every == 0 or step == run.total:
        now = time.time()
        m["images_per_s"] = (step - clock["step"]) * t.batch_size / max(now - clock["t"], 1e-9)
        clock.update(t=now, step=step)
        with run.writer.as_default(step=step):
            for k, v in m.items():
                tf.summary.scalar(k, v)
        append_jsonl(run.run_dir / "metrics.jsonl", {"step": step, "epoch": epoch + 1, **m})
        bar.set_postfix(d=f"{m['d_loss']:.3f}", g=f"{m['g_loss']:.3f}",
                        img_s=f"{m['images_per_s']:.0f}")
    if step % t.sample_every == 0:
        run.write_samples()
    if step % t.checkpoint_every == 0:
        run.checkpoint()


def _finish_run(run: _Run, t0: float) -> TrainResult:
    """The last checkpoint and sample grid, the exported model and the finished run.json."""
    trainer, data = run.trainer, run.data
    if not run.chief:
        return TrainResult(run.run_dir, trainer.step, run.total, len(data), data.skipped,
                           run.start, None, time.time() - t0)
    run.checkpoint()
    if not (run.run_dir / "samples" / f"step_{trainer.step:07d}.png").exists():
        run.write_samples()
    run.writer.flush()
    model_dir = export_run(run.run_dir, run.cfg, trainer)
    seconds = time.time() - t0
    run.record.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), step=trainer.step,
                      seconds_this_session=round(seconds, 1))
    atomic_write_bytes(run.run_dir / "run.json", json.dumps(run.record, indent=2).encode())
    return TrainResult(run.run_dir, trainer.step, run.total, len(data), data.skipped, run.start,
                       model_dir, seconds)


def _previous_init(run_dir: Path, path: bool = False):
    """The `init_from` record of the run's run.json (its model path with `path`), or None."""
    try:
        rec = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("init_from")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
        return None
    return Path(rec["path"]) if path else rec


def _check_losses(losses: dict[str, float], step: int, ckpt_root: Path) -> None:
    """Diverged when a loss of this step is NaN or infinite: the weights it updated are garbage,
    so nothing of this step is logged or saved, and the run's last checkpoint stays the newest."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if not bad:
        return
    found = list_checkpoints(ckpt_root)
    kept = (f"its last good checkpoint, {found[-1]}, is kept and a re-run resumes from it"
            if found else "no checkpoint had been written yet")
    shown = ", ".join(f"{k} = {v}" for k, v in bad.items())
    raise Diverged(f"training diverged at step {step} ({shown}); this step was not saved and "
                   f"{kept}. A lower train.lr, in a new --out-dir, may train stably")


def _check_workers_agree(strategy, step: int, run_dir: Path) -> None:
    """RunDirError unless every replica resumed at the same step (workers that do not all see
    the same run directory would train different weights under one name)."""
    import tensorflow as tf

    @tf.function
    def moments():  # the mean of step and step^2 over the replicas: equal steps, no variance
        per_replica = strategy.run(lambda: tf.constant([step, step * step], tf.float64))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    mean, mean_sq = moments().numpy()
    if mean_sq - mean * mean > 0.25:
        raise RunDirError(f"the workers resumed {run_dir} at different steps (this one at {step}, "
                          f"the mean {mean:g}); every worker must see the same run directory "
                          "(a shared folder)")


def posthoc_average(start: Sequence[np.ndarray], snapshots: Sequence[tuple[int, Sequence]],
                    decay: float) -> list[np.ndarray]:
    """The generator's weight average at another `decay`, after the run: from `start` (the
    average at step 0: a warm start's model, whose generator is an average already) and
    `snapshots` [(step, weights)] of the trained generator (its checkpoints, steps ascending),
    each standing for the steps since the one before. With snapshots at steps t_1 < ... < t_K = T:

        A_T = d^T * start + sum_k d^(T - t_k) * (1 - d^(t_k - t_(k-1))) * G_(t_k),   t_0 = 0,

    which is the running average ema <- d * ema + (1 - d) * G when G holds still between
    snapshots (exact with a snapshot every step). Returns float32 arrays at step T."""
    if not snapshots:
        raise ValueError("posthoc_average needs at least one snapshot")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    steps = [t for t, _ in snapshots]
    if steps != sorted(set(steps)) or steps[0] < 1:
        raise ValueError(f"snapshot steps must be positive and ascending, got {steps}")
    total = steps[-1]
    acc = [np.asarray(w, np.float64) * decay ** total for w in start]
    previous = 0
    for t, weights in snapshots:
        c = decay ** (total - t) * (1.0 - decay ** (t - previous))
        acc = [a + c * np.asarray(w, np.float64) for a, w in zip(acc, weights, strict=True)]
        previous = t
    return [a.astype(np.float32) for a in acc]


def recompute_batchnorm(generator, z_dim: int, batch_size: int, batches: int = 128,
                        seed: int = 0) -> list[tuple[str, float]]:
    """Set the moving statistics of the generator's batch norms to what its weights produce:
    for each batch norm in order, the mean over `batches` batches of `batch_size` z (uniform in
    [-1, 1), seeded) of the batch's mean and biased variance of its input, computed in inference
    mode with the batch norms before it already recomputed. These are the values Keras's moving
    averages approach when the weights hold still. A weight average needs it: its moving
    statistics are the average of the trained generator's, not those of its averaged weights,
    whose activations vary less (a 0.9999 average over 14,500 steps: 8-15% less variance than
    recorded, some channels half), so the stale statistics shrink them further and the
    generator draws flatter, smoother faces (docs/quality.md). Returns (layer name, median of
    new / old variance) per batch norm."""
    import keras

    bns = [layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)]
    z = np.random.default_rng(seed).uniform(-1.0, 1.0, (batches * batch_size, z_dim))
    z = z.astype(np.float32)
    changed = []
    for bn in bns:
        prefix = keras.Model(generator.input, bn.input)
        means, variances = [], []
        for i in range(batches):
            a = np.asarray(prefix(z[i * batch_size:(i + 1) * batch_size], training=False),
                           np.float64)
            a = a.reshape(-1, a.shape[-1])
            means.append(a.mean(0))
            variances.append(a.var(0))
        variance = np.mean(variances, 0)
        old = np.asarray(bn.moving_variance, np.float64)
        changed.append((bn.name, float(np.median(variance / np.maximum(old, 1e-12)))))
        bn.moving_mean.assign(np.mean(means, 0).astype(np.float32))
        bn.moving_variance.assign(variance.astype(np.float32))
    return changed


def _load_weights(net, path: Path) -> None:
    """net.load_weights(path), RunDirError naming the file when it does not load or holds NaN
    or infinite values."""
    import zipfile

    from inpaint.models import first_non_finite_weight

    try:
        net.load_weights(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise RunDirError(f"{path} does not load: {e}") from e
    if (bad := first_non_finite_weight(net)) is not None:
        raise RunDirError(f"{path}: weight {bad} holds NaN or infinite values")


def export_average(run_dir: str | Path, cfg: Config, decay: float, *, upto: int | None = None,
                   out_dir: str | Path | None = None, storage: str = "float32",
                   start: str | Path | None = None, batchnorm: str = "recompute") -> Path:
    """Export `out_dir` (default `run_dir/model`) with the generator averaged at `decay` after
    the run (posthoc_average), from the run's checkpoints up to step `upto` (default: all); the
    discriminator is the last one's. The average starts from the model the run was started from
    (`--init-from`, recorded in run.json, its generator checked against the sha256 recorded
    there: a model folder such as the shipped one may hold another model by now; `start` gives
    the original from elsewhere, checked the same way), or, for a run started from random
    weights, from its oldest checkpoint (a random start is forgotten anyway). Each checkpoint
    stands for the steps
    since the one before: a decay's window, about 1 / (1 - decay) steps, should span several
    checkpoints and lie within those kept (train.keep_checkpoints x train.checkpoint_every); a
    warning says when the checkpoints deleted before the oldest kept one would carry more than 1%
    of the average's weight.

    `batchnorm` "recompute" (the default) then sets the average's batch-norm statistics to what
    its weights produce (recompute_batchnorm); "average" keeps the averaged moving statistics,
    as averages were exported before 2026-12-06."""
    from inpaint.models import build_discriminator, build_generator, export_model

    run_dir = Path(run_dir)
    if not 0.0 <= decay < 1.0:  # also NaN
        raise ConfigError(f"the average's decay must be in [0, 1), got {decay}")
    if batchnorm not in ("recompute", "average"):
        raise ConfigError(f"batchnorm must be 'recompute' or 'average', got {batchnorm!r}")
    ckpts = [(int(CKPT_RE.match(p.name).group(1)), p)
             for p in list_checkpoints(run_dir / "checkpoints")]
    ckpts = [(t, p) for t, p in ckpts if t > 0 and (upto is None or t <= upto)]  # oldest first
    if not ckpts:
        raise RunDirError(f"{run_dir} has no checkpoint" + (f" up to step {upto}" if upto else "")
                          + " to average; train first")
    generator = build_generator(cfg.model)
    snapshots = []
    for t, p in ckpts:
        _load_weights(generator, p / "generator.weights.h5")
        snapshots.append((t, generator.get_weights()))
    init = _average_start(run_dir, start)
    if init is not None:
        start = load_start(init, _previous_init(run_dir))
        first = 0
    else:  # the oldest checkpoint is the start, the others are averaged onto it
        (first, start), snapshots = snapshots[0], snapshots[1:]
    total = ckpts[-1][0]
    _warn_deleted_checkpoints(ckpts[0][0], first, total, decay, cfg.train.checkpoint_every)
    generator.set_weights(posthoc_average(start, [(t - first, w) for t, w in snapshots], decay)
                          if snapshots else start)
    statistics = _average_statistics(generator, cfg, batchnorm)
    discriminator = build_discriminator(cfg.model)
    _load_weights(discriminator, ckpts[-1][1] / "discriminator.weights.h5")
    origin = str(init) if init is not None else f"the run's checkpoint at step {first}"
    info = {"run": str(run_dir.resolve()),
            "generator": f"average at decay {decay} of {len(ckpts)} checkpoints (steps "
                         f"{ckpts[0][0]}-{total}) from {origin}; batch-norm statistics "
                         f"{statistics}"}
    return export_model(Path(out_dir) if out_dir else run_dir / "model", generator,
                        discriminator, cfg, step=total, extra=info, storage=storage)


def _warn_deleted_checkpoints(oldest: int, first: int, total: int, decay: float,
                              checkpoint_every: int) -> None:
    """Warn when the steps before the oldest kept checkpoint (deleted ones, taken as equal to
    it) carry more than 1% of the average's weight."""
    before = oldest - first  # steps the oldest kept checkpoint stands in for alone
    weight = decay ** (total - oldest) * (1.0 - decay ** before)
    if oldest > checkpoint_every + first and weight > 0.01:
        log.warning("the oldest checkpoint kept is step %d: the %d steps before it, %.0f%% of "
                    "the average at decay %g, are taken as equal to it; keep more checkpoints "
                    "(train.keep_checkpoints) or use a smaller decay", oldest, before,
                    100 * weight, decay)


def _average_statistics(generator, cfg: Config, batchnorm: str) -> str:
    """Give the averaged `generator` the batch-norm statistics `batchnorm` asks for ("recompute":
    recompute_batchnorm; "average": kept as averaged) and say which, for model.json."""
    if batchnorm == "average":
        return "averaged"
    ratios = recompute_batchnorm(generator, cfg.model.z_dim, cfg.train.batch_size)
    log.info("batch-norm statistics recomputed for the average; variance new / old: %s",
             ", ".join(f"{name} {r:.3f}" for name, r in ratios))
    return f"recomputed for its weights ({cfg.train.batch_size} x 128 z)"


def _average_start(run_dir: Path, start) -> Path | None:
    """The model folder an average of the run starts from: `start` if given, else the run's
    --init-from path; None for a run started from random weights (ConfigError with `start`)."""
    init = _previous_init(run_dir, path=True)
    if start is None:
        return init
    if init is None:
        raise ConfigError(f"{run_dir} started from random weights, not from a model: its average "
                          "starts from its oldest checkpoint; leave the start out")
    return Path(start)


def load_start(path: Path, record: dict) -> list:
    """The generator weights of the model at `path`, the start of an average of the run whose
    run.json `init_from` record is `record`; RunDirError when it does not load or its generator
    is not the one the run started from (by the sha256 recorded)."""
    from inpaint.models import load_model

    try:
        model = load_model(path)
    except (ModelError, OSError) as e:
        raise RunDirError(f"the average's start {path} (the model the run started from) does "
                          f"not load: {e}") from e
    want = (record.get("sha256") or {}).get("generator.keras")
    have = model.identity.get("sha256", {}).get("generator.keras")
    if want and have != want:
        raise RunDirError(f"the run started from the generator with sha256 {want[:12]}..., "
                          f"recorded in its run.json, but {path} holds another one "
                          f"({str(have)[:12]}...): the model there has been replaced since. "
                          "Give the model the run started from as the average's start "
                          "(posthoc_average.py --start DIR; a shipped model of an earlier "
                          "commit: git archive COMMIT inpaint/pretrained | tar -x -C DIR)")
    return model.generator.get_weights()


def export_run(run_dir: str | Path, cfg: Config, trainer: GANTrainer | None = None, *,
               raw: bool = False, out_dir: str | Path | None = None) -> Path:
    """Export `out_dir` (default `run_dir/model`) from `trainer`, or from the run's latest
    checkpoint. The exported generator is the weight average when the run keeps one, or the
    trained generator itself with `raw` (to compare the two)."""
    from inpaint.models import export_model

    run_dir = Path(run_dir)
    if trainer is None:
        trainer = GANTrainer(cfg)
        if trainer.restore_latest(run_dir / "checkpoints") is None:
            raise RunDirError(f"{run_dir} has no checkpoint to export; train first")
    generator = trainer.generator if raw else trainer.output_generator
    # Synchronised batch norm is a training setting of distributed runs: exported models are
    # the same whatever the strategy.
    synced = [bn for bn in _batchnorm_layers(generator, trainer.discriminator)
              if bn.synchronized]
    for bn in synced:
        bn.synchronized = False
    kind = "average" if generator is trainer.ema_generator else "trained"
    try:
        return export_model(Path(out_dir) if out_dir else run_dir / "model", generator,
                            trainer.discriminator, cfg, step=trainer.step,
                            extra={"run": str(run_dir.resolve()), "generator": kind})
    finally:
        for bn in synced:
            bn.synchronized = True
