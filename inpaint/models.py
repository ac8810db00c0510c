"""The networks (the DCGAN of Radford et al. 2016, as used for face completion by Yeh et al.
2017, and the encoder that proposes its z) and the model directory that `inpaint train` exports,
`inpaint train-encoder` extends and every later command loads. The one home of that format.

Model directory layout (Keras' own `.keras` format; loaded with safe mode, nothing pickled):
    generator.keras       z (B, z_dim) float32 in [-1, 1] -> images (B, S, S, C) float32 in [-1, 1]
    discriminator.keras   images (B, S, S, C) -> logits (B, 1) float32
    encoder.keras         optional: (B, S, S, C + 1) masked face and mask -> z (B, z_dim)
    config.toml           the resolved config the networks were built from
    model.json            format version, training step, a SHA-256 of each file above and, with
                          an encoder, the generator's SHA-256 it was trained for
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from inpaint import __version__
from inpaint.config import SEARCH_PRECISIONS, Config, ModelConfig, config_from_dict, dumps_config
from inpaint.errors import ConfigError, InpaintError, ModelError
from inpaint.files import atomic_dir, temporary_prefix
from inpaint.hardware import resolve_precision
from inpaint.images import to_float
from inpaint.layers import (
    BatchNormalization,
    BilinearInitializer,
    Conv2D,
    Conv2DTranspose,
    ConvOffset2D,
)

MODEL_FORMAT = "inpaint-dcgan"
MODEL_FORMAT_VERSION = 1
MODEL_FILES = ("generator.keras", "discriminator.keras", "config.toml")
ENCODER_FILE = "encoder.keras"  # written by inpaint train-encoder (export_with_encoder)
OPTIONAL_FILES = (ENCODER_FILE,)  # checked like the others when model.json lists them
# The face model shipped inside the package; `inpaint complete` uses it when --model is not given.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def _init(cfg: ModelConfig):
    return keras.initializers.RandomNormal(stddev=cfg.init_stddev)


def _bn(cfg: ModelConfig, name: str, dtype: str):
    return BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name=name,
                              dtype=dtype)


def _upsample(x, cfg: ModelConfig, filters: int, i: int, dtype: str):
    """Double the size of x (B, s, s, c) -> (B, 2s, 2s, filters) as `cfg.upsample` says. Every
    mode has k * k * c * filters + filters weights."""
    if cfg.upsample == "resize-conv":
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"g_up{i}", dtype=dtype)(x)
        return Conv2D(filters, cfg.kernel_size, padding="same", kernel_initializer=_init(cfg),
                      name=f"g_conv{i}", dtype=dtype)(x)
    init = BilinearInitializer(2) if cfg.upsample == "deconv-bilinear" else _init(cfg)
    return Conv2DTranspose(filters, cfg.kernel_size, strides=2, padding="same",
                           kernel_initializer=init, name=f"g_deconv{i}", dtype=dtype)(x)


def build_generator(cfg: ModelConfig, dtype: str = "float32") -> keras.Model:
    """z (B, z_dim) -> images (B, S, S, C) float32 in [-1, 1] (tanh).

    Dense to 4x4x(gf * 2^(n-1)), then n stride-2 transposed convolutions doubling the size up to S,
    halving the filters; batch norm and ReLU after all but the last. `cfg.upsample` may replace
    the transposed convolutions' random start by bilinear upsampling ("deconv-bilinear") or them
    by a bilinear resize and a convolution ("resize-conv", layers g_up<i> and g_conv<i>). `dtype`
    is a Keras dtype policy name ("float32", "mixed_bfloat16", ...); the output is always float32."""
    n = cfg.n_up
    base = cfg.gf * 2 ** (n - 1)
    z = keras.Input((cfg.z_dim,), name="z")
    x = layers.Dense(4 * 4 * base, kernel_initializer=_init(cfg), name="g_dense", dtype=dtype)(z)
    x = layers.Reshape((4, 4, base), name="g_reshape", dtype=dtype)(x)
    x = _bn(cfg, "g_bn0", dtype)(x)
    x = layers.ReLU(name="g_relu0", dtype=dtype)(x)
    for i in range(1, n + 1):
        last = i == n
        filters = cfg.channels if last else base // 2 ** i
        x = _upsample(x, cfg, filters, i, dtype)
        if not last:
            x = _bn(cfg, f"g_bn{i}", dtype)(x)
            x = layers.ReLU(name=f"g_relu{i}", dtype=dtype)(x)
    out = layers.Activation("tanh", name="g_tanh", dtype="float32")(x)
    return keras.Model(z, out, name="generator")


def widen_generator(generator: keras.Model, cfg: ModelConfig, gf: int,
                    seed: int = 0) -> tuple[keras.Model, ModelConfig]:
    """The generator `generator` (built from `cfg`) with `gf` > cfg.gf filters in its last hidden
    layer (and as many more in each layer before it), computing the same function: Net2WiderNet
    (Chen et al. 2016, "Net2Net"). Each new channel copies a random old one's incoming weights,
    bias and batch norm (so the copies carry equal activations, in training mode too), and every
    old channel's outgoing weights are split among it and its copies by random fractions that sum
    to one, element by element: the sum the next layer computes is unchanged (up to float32
    rounding), and the copies' different shares give them different gradients, so they grow
    apart in training instead of staying twins. Returns (the new float32 generator, its config).
    The discriminator is not touched. ValueError unless gf > cfg.gf."""
    if not isinstance(gf, int) or gf <= cfg.gf:
        raise ValueError(f"gf must be an integer above the generator's {cfg.gf}, got {gf!r}")
    new_cfg = replace(cfg, gf=gf)
    rng = np.random.default_rng(seed)
    n = cfg.n_up
    old_w = [cfg.gf * 2 ** (n - 1 - s) for s in range(n)]  # channels entering stage s + 1
    new_w = [gf * 2 ** (n - 1 - s) for s in range(n)]
    picks = [np.concatenate([np.arange(o), rng.integers(0, o, w - o)])
             for o, w in zip(old_w, new_w)]

    def split(kernel: np.ndarray, axis: int, pick: np.ndarray, old: int) -> np.ndarray:
        k = np.moveaxis(kernel, axis, -1)[..., pick]
        share = rng.uniform(0.5, 1.5, k.shape)
        onehot = np.eye(old)[pick]  # (new, old)
        share = share / (share @ onehot)[..., pick]
        return np.moveaxis(k * share, -1, axis)

    weights = {w.path: np.asarray(w, dtype=np.float32) for w in generator.weights}
    new = build_generator(new_cfg, "float32")
    up = "g_conv" if cfg.upsample == "resize-conv" else "g_deconv"
    # The upsampling kernel's (output, input) channel axes: Conv2DTranspose (k, k, out, in),
    # Conv2D (k, k, in, out).
    out_axis, in_axis = (3, 2) if up == "g_conv" else (2, 3)
    values: dict[str, np.ndarray] = {}
    k = weights["g_dense/kernel"].reshape(cfg.z_dim, 16, old_w[0])
    values["g_dense/kernel"] = k[..., picks[0]].reshape(cfg.z_dim, -1)
    values["g_dense/bias"] = weights["g_dense/bias"].reshape(16, old_w[0])[:, picks[0]].ravel()
    for s in range(n):
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            values[f"g_bn{s}/{part}"] = weights[f"g_bn{s}/{part}"][picks[s]]
        kernel = split(weights[f"{up}{s + 1}/kernel"], in_axis, picks[s], old_w[s])
        bias = weights[f"{up}{s + 1}/bias"]
        if s + 1 < n:  # the layer's outputs are widened too
            kernel = np.take(kernel, picks[s + 1], axis=out_axis)
            bias = bias[picks[s + 1]]
        values[f"{up}{s + 1}/kernel"], values[f"{up}{s + 1}/bias"] = kernel, bias
    missing = sorted({w.path for w in new.weights} - values.keys())
    if missing:
        raise ValueError(f"cannot widen this generator: no rule for {missing}")
    for w in new.weights:
        w.assign(values[w.path])
    return new, new_cfg


def build_discriminator(cfg: ModelConfig, dtype: str = "float32") -> keras.Model:
    """images (B, S, S, C) in [-1, 1] -> logits (B, 1) float32 (real > 0).

    n stride-2 convolutions from df filters doubling down to 4x4, leaky ReLU after each and batch
    norm on all but the first, then one dense logit. The convolutions named in `cfg.deformable`
    are preceded by a ConvOffset2D (d_offset<i>), which makes them deformable."""
    img = keras.Input((cfg.image_size, cfg.image_size, cfg.channels), name="image")
    x = img
    for i in range(cfg.n_up):
        if f"d_conv{i}" in cfg.deformable:
            x = ConvOffset2D(name=f"d_offset{i}", dtype=dtype)(x)
        x = Conv2D(cfg.df * 2 ** i, cfg.kernel_size, strides=2, padding="same",
                   kernel_initializer=_init(cfg), name=f"d_conv{i}", dtype=dtype)(x)
        if i > 0:
            x = _bn(cfg, f"d_bn{i}", dtype)(x)
        x = layers.LeakyReLU(negative_slope=cfg.leak, name=f"d_lrelu{i}", dtype=dtype)(x)
    x = layers.Flatten(name="d_flatten", dtype=dtype)(x)
    logit = layers.Dense(1, kernel_initializer=_init(cfg), name="d_logit", dtype="float32")(x)
    return keras.Model(img, logit, name="discriminator")


def build_models(cfg: Config) -> tuple[keras.Model, keras.Model]:
    """(generator, discriminator) in the config's precision."""
    precision = resolve_precision(cfg.train.precision, training=True)
    return build_generator(cfg.model, precision), build_discriminator(cfg.model, precision)


def build_encoder(cfg: ModelConfig, filters: int = 32, dtype: str = "float32") -> keras.Model:
    """(B, S, S, C + 1): the face with its hole zeroed and the mask (1 = known) -> z (B, z_dim)
    float32 in (-1, 1). The discriminator's layout (stride-2 convolutions, leaky ReLU) without
    batch norm, so a face's proposal never depends on the rest of its batch, then tanh."""
    inp = keras.Input((cfg.image_size, cfg.image_size, cfg.channels + 1), name="masked_face")
    x = inp
    for i in range(cfg.n_up):
        x = Conv2D(filters * 2 ** i, cfg.kernel_size, strides=2, padding="same",
                   kernel_initializer=keras.initializers.HeNormal(), name=f"e_conv{i}",
                   dtype=dtype)(x)
        x = layers.LeakyReLU(negative_slope=cfg.leak, name=f"e_lrelu{i}", dtype=dtype)(x)
    x = layers.Flatten(name="e_flatten", dtype=dtype)(x)
    x = layers.Dense(cfg.z_dim, kernel_initializer=keras.initializers.GlorotUniform(),
                     name="e_z", dtype=dtype)(x)
    z = layers.Activation("tanh", name="e_tanh", dtype="float32")(x)
    return keras.Model(inp, z, name="encoder")


def encoder_input(images, masks):
    """images (B, S, S, C) float in [-1, 1], masks (B, S, S) with 1 = known -> (B, S, S, C + 1):
    the hole set to 0 (mid-grey), the mask as the last channel."""
    m = tf.cast(masks, tf.float32)[..., None]
    return tf.concat([tf.cast(images, tf.float32) * m, m], axis=-1)


def propose(encoder: keras.Model, images: np.ndarray, masks: np.ndarray,
            batch_size: int = 256) -> np.ndarray:
    """E's z for each face: images (B, S, S, C) uint8, masks (B, S, S) -> (B, z_dim) float32 in
    [-1, 1]. Each row depends only on its own face and mask."""
    out = []
    for i in range(0, len(images), batch_size):
        x = encoder_input(to_float(np.asarray(images[i:i + batch_size])),
                          np.asarray(masks[i:i + batch_size], np.float32))
        out.append(np.asarray(encoder(x, training=False), np.float32))
    if not out:
        return np.zeros((0, int(encoder.output_shape[-1])), np.float32)
    return np.clip(np.concatenate(out), -1.0, 1.0)


@dataclass
class LoadedModel:
    generator: keras.Model
    discriminator: keras.Model
    config: Config
    meta: dict
    path: Path
    encoder: keras.Model | None = None  # proposes z (build_encoder); None if the model has none
    _networks: dict = field(default_factory=dict, repr=False, compare=False)

    def networks(self, precision: str = "float32") -> tuple[keras.Model, keras.Model]:
        """(generator, discriminator) computing in `precision`: "float32" or "bfloat16" (mixed:
        bfloat16 compute, float32 variables); the loaded networks themselves for float32."""
        policy = precision_policy(precision)  # "auto" and what it resolves to: one entry
        if policy not in self._networks:  # cast once: rebuilding the networks takes seconds
            self._networks[policy] = cast_networks(self.generator, self.discriminator, policy)
        return self._networks[policy]

    @property
    def identity(self) -> dict:
        """What identifies this model in a run record: where it came from and its file hashes."""
        return {"path": str(self.path), "step": self.meta.get("step"),
                "sha256": self.meta.get("sha256", {})}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def network_policy(model: keras.Model) -> str:
    """The dtype policy the layers of `model` compute in (that of its first layer with weights;
    a functional model's own policy does not say)."""
    for layer in model.layers:
        if layer.weights:
            return layer.dtype_policy.name
    return model.dtype_policy.name


def precision_policy(precision: str) -> str:
    """The Keras dtype policy of a search precision: "float32" -> "float32", "bfloat16" ->
    "mixed_bfloat16" (bfloat16 compute, float32 variables). ModelError for anything else."""
    if precision not in SEARCH_PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(SEARCH_PRECISIONS)}, got "
                         f"{precision!r}")
    precision = resolve_precision(precision, training=False)
    return "float32" if precision == "float32" else "mixed_bfloat16"


def cast_networks(generator: keras.Model, discriminator: keras.Model,
                  policy: str) -> tuple[keras.Model, keras.Model]:
    """The same networks computing in dtype policy `policy` ("float32", "mixed_bfloat16",
    "float16", ...): rebuilt layer by layer with the weights copied (and cast) when the policy
    differs, else returned as they are. The output layer computes in float32, as build_generator
    and build_discriminator make it, so the outputs stay float32 in every policy."""
    return cast_network(generator, policy), cast_network(discriminator, policy)


def cast_network(model: keras.Model, policy: str) -> keras.Model:
    """One network computing in dtype policy `policy` (see cast_networks); itself if it does."""
    return model if network_policy(model) == policy else _with_policy(model, policy)


def _with_policy(model: keras.Model, policy: str) -> keras.Model:
    last = model.layers[-1]

    def rebuild(layer):
        config = dict(layer.get_config(), dtype="float32" if layer is last else policy)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=rebuild)
    clone.set_weights([np.asarray(w).astype(v.dtype) for w, v in
                       zip(model.get_weights(), clone.weights)])
    return clone


def export_model(out_dir: str | Path, generator: keras.Model, discriminator: keras.Model,
                 cfg: Config, step: int = 0, extra: dict | None = None,
                 storage: str = "float32") -> Path:
    """Write the model directory `out_dir` (see the module docstring). The files are written to a
    temporary folder beside it which then replaces `out_dir`, so a crash never leaves a mixture.

    storage "float16" stores the weights in half precision (half the size); load_model casts them
    back to float32."""
    if storage not in ("float32", "float16"):
        raise ValueError(f"storage must be float32 or float16, got {storage!r}")
    generator, discriminator = cast_networks(generator, discriminator, storage)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_exports(out_dir)
    with atomic_dir(out_dir) as tmp:
        generator.save(tmp / "generator.keras")
        discriminator.save(tmp / "discriminator.keras")
        (tmp / "config.toml").write_text(dumps_config(cfg), encoding="utf-8")
        meta = {
            "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
            "inpaint_version": __version__, "step": int(step),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "image_size": cfg.model.image_size, "channels": cfg.model.channels,
            "z_dim": cfg.model.z_dim, "storage": storage,
            "sha256": {name: sha256_file(tmp / name) for name in MODEL_FILES},
            **(extra or {}),
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out_dir


def export_with_encoder(model, encoder: keras.Model, out_dir: str | Path,
                        info: dict | None = None) -> Path:
    """Write `out_dir`: the model directory of `model` (its files copied unchanged) with
    `encoder.keras` (float16 storage) added and listed in model.json. Written to a temporary
    folder that then replaces `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_exports(out_dir)
    with atomic_dir(out_dir) as tmp:
        for name in MODEL_FILES:
            shutil.copyfile(model.path / name, tmp / name)
        cast_network(encoder, "float16").save(tmp / ENCODER_FILE)
        meta = json.loads((model.path / "model.json").read_text("utf-8"))
        meta["sha256"] = {**meta["sha256"], ENCODER_FILE: sha256_file(tmp / ENCODER_FILE)}
        meta["encoder"] = {"for_generator": meta["sha256"]["generator.keras"],
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(info or {})}
        (tmp / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out_dir


def remove_stale_exports(out_dir: Path) -> None:
    """Delete what an export into `out_dir` that was killed left beside it: its temporary
    folder (`.<name>.XXXXXXXX`, mkdtemp's 8 random characters) and the previous model it was
    replacing (`.<name>.old`). The caller holds the run's lock, so no export is running."""
    prefix = temporary_prefix(out_dir.name)
    if not out_dir.parent.is_dir():
        return
    for p in out_dir.parent.iterdir():
        rest = p.name[len(prefix):] if p.name.startswith(prefix) else None
        if rest is not None and p.is_dir() and not p.is_symlink() and (
                re.fullmatch(r"[a-z0-9_]{8}", rest) or rest == "old"):
            shutil.rmtree(p, ignore_errors=True)


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory, or a training run directory holding one in `model/`."""
    path = Path(path)
    if (path / "model.json").is_file():
        return path
    if (path / "model" / "model.json").is_file():
        return path / "model"
    if not path.exists():
        raise ModelError(f"model {path} does not exist")
    if (path / "checkpoints").is_dir():
        raise ModelError(f"{path} is a training run without an exported model; run "
                         f"`inpaint train -o {path} --export-only` to export one")
    raise ModelError(f"{path} is not a model directory (no model.json); pass a training run "
                     "directory or its model/ folder")


def shipped_model_dir() -> Path | None:
    """The model shipped inside the package (PRETRAINED_DIR), what every command uses when no
    --model is given; None where it is not installed (a checkout without its files)."""
    return PRETRAINED_DIR if (PRETRAINED_DIR / "model.json").is_file() else None


def model_dir_named(path: str | Path) -> Path:
    """resolve_model_dir(path), where "pretrained" names the shipped model (unless a folder of
    that name exists). ModelError as resolve_model_dir."""
    if str(path) == "pretrained" and not Path(path).exists():
        path = PRETRAINED_DIR
    return resolve_model_dir(path)


def load_model(path: str | Path | None = None, verify: bool = True) -> LoadedModel:
    """Load a model directory (or a run directory's `model/`; None: the shipped model,
    PRETRAINED_DIR), with Keras safe mode on.

    Raises ModelError if files are missing, their hashes do not match model.json (when `verify`),
    the config is invalid, or the networks do not match the config."""
    model_dir = resolve_model_dir(PRETRAINED_DIR if path is None else path)
    meta = _read_meta(model_dir)
    _check_files(model_dir, meta["sha256"], verify)
    try:
        import tomllib

        cfg = config_from_dict(tomllib.loads((model_dir / "config.toml").read_text("utf-8")),
                               source=str(model_dir / "config.toml"))
    except (ConfigError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{model_dir}/config.toml is invalid: {exc}") from None
    gen, disc = (_load_network(model_dir, name) for name in ("generator.keras",
                                                             "discriminator.keras"))
    s, c, zd = cfg.model.image_size, cfg.model.channels, cfg.model.z_dim
    if tuple(gen.input_shape[1:]) != (zd,) or tuple(gen.output_shape[1:]) != (s, s, c):
        raise ModelError(f"{model_dir}: the generator maps {gen.input_shape} -> "
                         f"{gen.output_shape}, not what config.toml describes")
    if tuple(disc.input_shape[1:]) != (s, s, c):
        raise ModelError(f"{model_dir}: the discriminator takes {disc.input_shape}, not "
                         f"{s}x{s}x{c} images as config.toml says")
    if network_policy(gen) == "float16":  # half-precision storage: compute in float32
        gen, disc = cast_networks(gen, disc, "float32")
    return LoadedModel(gen, disc, cfg, meta, model_dir, _load_encoder(model_dir, meta, cfg))


def _load_encoder(model_dir: Path, meta: dict, cfg: Config) -> keras.Model | None:
    """The optional encoder.keras (checked by _check_files when model.json lists it), in float32;
    ModelError if it was trained for another generator or does not fit this one."""
    if ENCODER_FILE not in meta["sha256"]:
        return None
    info = meta.get("encoder") if isinstance(meta.get("encoder"), dict) else {}
    if info.get("for_generator") != meta["sha256"].get("generator.keras"):
        raise ModelError(f"{model_dir}/{ENCODER_FILE} was trained for another generator; "
                         "train an encoder for this one (inpaint train-encoder) or remove it "
                         f"and its entries from model.json")
    enc = _load_network(model_dir, ENCODER_FILE)
    check_encoder(enc, cfg.model, f"{model_dir}/{ENCODER_FILE}")
    return cast_network(enc, "float32")


def check_encoder(encoder: keras.Model, model_cfg: ModelConfig, where: str) -> None:
    """ModelError unless `encoder` maps (S, S, C + 1) to (z_dim,)."""
    s, c, zd = model_cfg.image_size, model_cfg.channels, model_cfg.z_dim
    if (tuple(encoder.input_shape[1:]) != (s, s, c + 1)
            or tuple(encoder.output_shape[1:]) != (zd,)):
        raise ModelError(f"{where}: the encoder maps {encoder.input_shape} -> "
                         f"{encoder.output_shape}, not {s}x{s}x{c + 1} -> {zd} as the generator "
                         "needs")


def _read_meta(model_dir: Path) -> dict:
    """model.json, checked to describe an inpaint model this version can read."""
    try:
        meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model_dir}/model.json is unreadable: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{model_dir}/model.json is not an inpaint model description")
    version, sums = meta.get("format_version", 0), meta.get("sha256")
    if not isinstance(version, int) or not isinstance(sums, dict):
        raise ModelError(f"{model_dir}/model.json is damaged (format_version or sha256 missing "
                         "or of the wrong type); re-export the model")
    if version > MODEL_FORMAT_VERSION:
        raise ModelError(f"{model_dir} was written by a newer inpaint (format "
                         f"{version}); upgrade inpaint")
    return meta


def _check_files(model_dir: Path, sums: dict, verify: bool) -> None:
    """Every model file present and, with `verify`, matching its checksum in model.json."""
    optional = [name for name in OPTIONAL_FILES if name in sums]
    for name in (*MODEL_FILES, *optional):
        if not (model_dir / name).is_file():
            raise ModelError(f"{model_dir} is incomplete: {name} is missing")
        expected = sums.get(name)
        if verify and not isinstance(expected, str):  # a removed checksum must not skip the check
            raise ModelError(f"{model_dir}/model.json has no checksum for {name}; re-export the "
                             "model")
        if verify and sha256_file(model_dir / name) != expected:
            raise ModelError(f"{model_dir}/{name} does not match the checksum in model.json "
                             "(modified or corrupt); re-export the model")


def _load_network(model_dir: Path, name: str) -> keras.Model:
    """One network file, loaded in safe mode, refused if a weight is NaN or infinite."""
    try:
        net = keras.saving.load_model(model_dir / name, custom_objects=_custom_objects(),
                                      compile=False, safe_mode=True)
    except InpaintError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot load {model_dir}/{name}: {exc}") from None
    if (bad := first_non_finite_weight(net)) is not None:
        raise ModelError(f"{model_dir}/{name}: weight {bad} holds NaN or infinite values (a "
                         "diverged training or a damaged file); export the model again "
                         "from a good checkpoint")
    return net


def first_non_finite_weight(model: keras.Model) -> str | None:
    """The path of the first weight of `model` holding NaN or an infinity, else None. Such a
    network outputs NaN for every input (a diverged training, or a damaged file whose checksums
    were recomputed): a completion made with it is a black hole, not an error."""
    for w in model.weights:
        values = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        if values.size and not np.isfinite(values.astype(np.float32)).all():
            return w.path
    return None


def _custom_objects() -> dict:
    """Layers of this package that a saved model may contain (registered for safe loading)."""
    return {"BilinearInitializer": BilinearInitializer, "ConvOffset2D": ConvOffset2D,
            "BatchNormalization": BatchNormalization, "Conv2D": Conv2D,
            "Conv2DTranspose": Conv2DTranspose}
