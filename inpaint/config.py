"""Configuration: dataclasses with defaults, TOML loading and typed `section.key=value` overrides.

The dataclass defaults are the DCGAN of the reference implementations (configs/dcgan64.toml spells
them out with a reason per value). Unknown sections or keys and values of the wrong type are
`ConfigError`s naming the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from inpaint.errors import ConfigError, UsageError
from inpaint.files import atomic_write_bytes, open_regular


@dataclass
class DataConfig:
    crop: str = "center"  # "center": centred square; "none": squash the whole frame
    crop_fraction: float = 1.0  # side of the centred square as a fraction of the shorter side
    flip: bool = True  # random horizontal flips (faces are roughly symmetric)
    shuffle_buffer: int = 10000  # images are held in memory, so a full shuffle is cheap

    def validate(self) -> None:
        _choice("data.crop", self.crop, ("center", "none"))
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(f"data.crop_fraction must be in (0, 1], got {self.crop_fraction}")
        _positive("data.shuffle_buffer", self.shuffle_buffer)


UPSAMPLE_MODES = ("deconv", "deconv-bilinear", "resize-conv")


@dataclass
class ModelConfig:
    image_size: int = 64  # square images, a power of two >= 8
    channels: int = 3
    z_dim: int = 100
    gf: int = 64  # generator filters in the last hidden layer
    df: int = 64  # discriminator filters in the first layer
    kernel_size: int = 5
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    leak: float = 0.2
    init_stddev: float = 0.02
    # Generator upsampling: "deconv" (reference: stride-2 transposed convs, N(0, init_stddev)),
    # "deconv-bilinear" (the same, initialised to bilinear upsampling) or "resize-conv" (bilinear
    # resize then a convolution, against checkerboard artefacts). See inpaint.layers.
    upsample: str = "deconv"
    # Discriminator convolutions ("d_conv0", "d_conv1", ...) preceded by a ConvOffset2D, making
    # them deformable. Empty in the reference.
    deformable: list[str] = field(default_factory=list)

    @property
    def n_up(self) -> int:
        """Number of stride-2 stages between the 4x4 base and the image size."""
        return (self.image_size // 4).bit_length() - 1

    @property
    def discriminator_convs(self) -> list[str]:
        """Names of the discriminator's convolutions, the valid entries of `deformable`."""
        return [f"d_conv{i}" for i in range(self.n_up)]

    def validate(self) -> None:
        s = self.image_size
        if s < 8 or s & (s - 1):
            raise ConfigError(f"model.image_size must be a power of two >= 8, got {s}")
        for key in ("channels", "z_dim", "gf", "df", "kernel_size"):
            _positive(f"model.{key}", getattr(self, key))
        if self.channels not in (1, 3):
            raise ConfigError(f"model.channels must be 1 or 3, got {self.channels}")
        _choice("model.upsample", self.upsample, UPSAMPLE_MODES)
        if self.upsample == "deconv-bilinear" and self.kernel_size < 4:
            raise ConfigError("model.upsample = 'deconv-bilinear' needs model.kernel_size >= 4 "
                              f"(bilinear upsampling by 2 has 4 taps), got {self.kernel_size}")
        valid = self.discriminator_convs
        for name in self.deformable:
            if name not in valid:
                raise ConfigError(f"model.deformable: no discriminator convolution {name!r}; "
                                  f"the {self.image_size}x{self.image_size} discriminator has "
                                  f"{', '.join(valid)}")
        if len(set(self.deformable)) != len(self.deformable):
            raise ConfigError(f"model.deformable lists a layer twice: {self.deformable}")
        _in_range("model.bn_momentum", self.bn_momentum, 0.0, 1.0)
        _positive("model.bn_epsilon", self.bn_epsilon)
        _in_range("model.leak", self.leak, 0.0, 1.0)
        _positive("model.init_stddev", self.init_stddev)


STRATEGIES = ("default", "mirrored", "multi-worker")
TRAIN_PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@dataclass
class TrainConfig:
    epochs: int = 25
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    adam_epsilon: float = 1e-8
    g_steps: int = 2  # generator updates per discriminator update
    seed: int = 0
    # "auto": mixed_bfloat16 where the hardware computes bfloat16 (a GPU, a CPU with AVX512-BF16
    # or AMX), else float32 (inpaint/hardware.py); or "float32" | "mixed_bfloat16" | "mixed_float16"
    precision: str = "auto"
    checkpoint_every: int = 500  # steps
    keep_checkpoints: int = 3
    sample_every: int = 200  # steps
    log_every: int = 10  # steps
    # tf.distribute: "default" (one device, no strategy), "mirrored" (the local GPUs, else the
    # logical CPU devices) or "multi-worker" (machines listed in TF_CONFIG). The global batch
    # is split over the replicas; see README, Beyond one machine.
    strategy: str = "default"
    # Exponential moving average of the generator's weights (0 turns it off): the averaged
    # generator is sampled, exported and searched. Its decay ramps up as min(ema_decay,
    # (1 + step) / (10 + step)), so early averages do not hold on to the initial weights.
    ema_decay: float = 0.999
    # R1 penalty on real faces (Mescheder et al. 2018): the discriminator's loss gains
    # r1_gamma / 2 * E[|grad_x D(x)|^2] over the real batch, D's logit differentiated by the
    # pixels in [-1, 1]. 0 turns it off. Lazy, as in StyleGAN2: added every r1_every steps,
    # scaled by r1_every, so it costs a double backward pass through D once every r1_every steps.
    r1_gamma: float = 0.0
    r1_every: int = 16

    def validate(self) -> None:
        if not 0.0 <= self.r1_gamma < float("inf"):  # NaN fails too
            raise ConfigError(f"train.r1_gamma must be a finite number >= 0, got {self.r1_gamma}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        _positive("train.adam_epsilon", self.adam_epsilon)
        _in_range("train.seed", self.seed, 0, MAX_SEED)
        for key in ("epochs", "batch_size", "g_steps", "checkpoint_every", "keep_checkpoints",
                    "sample_every", "log_every", "r1_every"):
            _positive(f"train.{key}", getattr(self, key))
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.beta1 < 1.0:
            raise ConfigError(f"train.beta1 must be in [0, 1), got {self.beta1}")
        _choice("train.precision", self.precision, TRAIN_PRECISIONS)
        _choice("train.strategy", self.strategy, STRATEGIES)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Config:
        for name, section in _sections(self).items():
            _check_finite(name, section)
        self.data.validate()
        self.model.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The latent search's choices (inpaint.search); the CLI offers these, TensorFlow not needed.
OPTIMIZERS = ("adam", "momentum")
PERCEPTUAL = ("nonsaturating", "paper")
CONTEXT_WEIGHTINGS = ("yeh", "none")
SEARCH_PRECISIONS = ("auto", "float32", "bfloat16")
DEFAULT_LR = {"adam": 0.03, "momentum": 0.01}
# Where each search starts: the model's encoder (models.propose) or a uniform random z; "auto":
# the encoder where the model has one and the mask is in pixels (not lowres), else random.
INITS = ("auto", "encoder", "random")
# Iterations when none are asked for, by start and mask. Measured on celeba-val (docs/search.md):
# from a random z, Adam with Yeh weighting has converged by ~100; from the encoder's proposal a
# hole is filled best after a few dozen (later ones fit the context closer and the hole drifts),
# but scattered missing pixels (masks.MaskSpec.scattered: known pixels everywhere) keep gaining
# in PSNR and detail to 150.
DEFAULT_ITERS = {"random": 150, "encoder": 30, "encoder-scattered": 150}
# Bounds on what a search may be asked for. 10,000 iterations is 67x the longest default and
# ~25 minutes for a batch of 64 on 2 cores (0.14 s a step): past it a typo, not a plan. The
# multi-code search mixes features of 20-30 codes in Gu et al. 2020; at 1000 its per-channel
# weights no longer fit (loss 116 against 12.6 at 8: a magenta-yellow blob), so at most 64.
MAX_ITERS = 10_000
MAX_CODES = 64
MAX_RESTARTS = 64
MAX_ENCODER_NORM = 2.0  # a random z's typical length times this; sqrt(3) already fills the cube
# encoder_norm "auto": the proposal rescaled to this fraction when the search starts from the
# encoder. The shipped encoder proposes z of 0.5-0.6 of that length and its generator is blander
# there; 0.78 on the 400 aligned celeba-val faces: detail -0.63 -> -0.57 (centre hole) and -0.92
# -> -0.74 (left half) for -0.11 and -0.29 dB, and on 20 whole photos (`inpaint fill`, mouth and
# nose) +0.36 dB and detail +0.09, both within noise (docs/search.md).
DEFAULT_ENCODER_NORM = 0.78
ENCODER_NORM_WORDS = ("auto", "off")
# What the search changes: z only (Yeh et al.); several codes whose generator features are mixed
# with learned per-channel weights (multi-code GAN prior, Gu et al., CVPR 2020); or z and then,
# per image, the generator's weights held close to the trained ones (the idea of Pan et al.
# 2020's deep generative prior).
SEARCH_KINDS = ("z", "multi-code", "finetune")


@dataclass
class SearchOptions:
    """The latent search. Defaults are the toolkit's recommended settings (see README)."""

    iters: int | None = None  # None: DEFAULT_ITERS for where the search starts (docs/search.md)
    optimizer: str = "adam"  # "adam" | "momentum" (the reference's Nesterov update)
    lr: float | None = None  # None: 0.03 for adam, 0.01 for momentum
    momentum: float = 0.9
    beta2: float = 0.999  # adam
    lam: float = 0.1  # weight of the perceptual loss (Yeh et al.)
    perceptual: str = "nonsaturating"  # -log D(G(z)); "paper": log(1 - D(G(z)))
    context_weighting: str = "yeh"  # "yeh" | "none" (plain L1 of known pixels)
    restarts: int = 1
    seed: int = 0
    precision: str = "auto"  # "auto" (bfloat16 where native, see hardware.py) | "float32" | "bfloat16"
    optimize_shift: bool = False  # also search a sub-pixel translation of G(z) per image
    max_shift: float = 4.0  # pixels, each axis
    shift_lr: float = 0.05  # pixels per Adam step
    init: str = "auto"  # INITS; with restarts > 1 the first restart starts from the encoder
    encoder_norm: float | str | None = "auto"  # the encoder's proposal rescaled to this fraction
    #   of a random z's typical length, sqrt(z_dim / 3): proposals are shorter (regression to the
    #   mean) and G is smoother near z = 0 (docs/search.md). "auto": DEFAULT_ENCODER_NORM when
    #   the search starts from the encoder, nothing otherwise; "off" or None: as proposed
    search: str = "z"  # SEARCH_KINDS
    codes: int = 8  # multi-code: latent codes per image
    code_stage: int = 1  # multi-code: the codes' features are mixed after this upsampling stage
    finetune_steps: int = 30  # Adam steps on G's weights per image, after the z search
    finetune_lr: float = 3e-4  # 16 val faces, centre: 1e-4 +0.03 dB, 3e-4 +0.31, 1e-3 +0.39
    #                            (less detail); docs/search.md
    finetune_hold: float = 10.0  # weight of the squared distance of G's weights to the trained

    @classmethod
    def of(cls, options) -> SearchOptions:
        """`options` as SearchOptions: None -> the defaults, a mapping -> its fields (UsageError
        for a name that is not one), SearchOptions -> itself; UsageError for anything else."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, typing.Mapping):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(str(k) for k in options if k not in names)
            if unknown:
                raise UsageError(f"unknown search option {unknown[0]!r}; the options are "
                                 f"{', '.join(sorted(names))}")
            return cls(**options)
        raise UsageError(f"options must be SearchOptions or a dict of its fields, got "
                         f"{type(options).__name__}")

    def _check_types(self) -> None:
        """Each field of its annotated type (an int where a float is expected is fine; a bool is
        not a number here): a string for `iters` fails here, not deep in the search."""
        for name, hint in typing.get_type_hints(type(self)).items():
            value, allowed = getattr(self, name), typing.get_args(hint) or (hint,)
            if value is None:
                ok = type(None) in allowed
            elif bool in allowed or str in allowed:
                ok = isinstance(value, tuple(allowed)) or (
                    float in allowed and isinstance(value, int) and not isinstance(value, bool))
            else:  # numbers: a bool is not one; an int is a float
                ok = not isinstance(value, bool) and isinstance(
                    value, (int, float) if float in allowed else int)
            if not ok:
                kinds = " or ".join("None" if a is type(None) else a.__name__ for a in allowed)
                raise UsageError(f"search option {name} must be {kinds}, got {value!r}")

    def validate(self) -> SearchOptions:
        self._check_types()
        for name in ("lr", "momentum", "beta2", "lam", "max_shift", "shift_lr", "finetune_lr",
                     "finetune_hold", "encoder_norm"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str) and not math.isfinite(value):
                raise UsageError(f"{name} must be a finite number, got {value}")
        if not 0.0 <= self.momentum <= 1.0 or not 0.0 <= self.beta2 < 1.0:
            raise UsageError(f"momentum must be in [0, 1] and beta2 in [0, 1), got "
                             f"{self.momentum} and {self.beta2}")
        if self.lam < 0:
            raise UsageError(f"the perceptual weight lam must be >= 0, got {self.lam}")
        if self.seed < 0:
            raise UsageError(f"seed must be >= 0, got {self.seed}")
        if self.iters is not None and not 0 <= self.iters <= MAX_ITERS:
            raise UsageError(f"iterations must be in [0, {MAX_ITERS}], got {self.iters}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.perceptual not in PERCEPTUAL:
            raise UsageError(f"perceptual loss must be one of {PERCEPTUAL}")
        if self.context_weighting not in CONTEXT_WEIGHTINGS:
            raise UsageError("context weighting must be 'yeh' or 'none'")
        if not 1 <= self.restarts <= MAX_RESTARTS:
            raise UsageError(f"restarts must be in [1, {MAX_RESTARTS}], got {self.restarts}")
        if self.precision not in SEARCH_PRECISIONS:
            raise UsageError("search precision must be auto, float32 or bfloat16")
        if self.max_shift < 0 or self.shift_lr <= 0:
            raise UsageError("max shift must be >= 0 and the shift step > 0")
        if self.learning_rate <= 0:
            raise UsageError(f"learning rate must be > 0, got {self.learning_rate}")
        norm = self.encoder_norm
        if isinstance(norm, str) and norm not in ENCODER_NORM_WORDS or (
                not isinstance(norm, str) and norm is not None
                and not 0 < norm <= MAX_ENCODER_NORM):
            raise UsageError(f"encoder norm must be auto, off or a number in (0, "
                             f"{MAX_ENCODER_NORM}], got {norm!r}")
        if self.init not in INITS:
            raise UsageError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.search not in SEARCH_KINDS:
            raise UsageError(f"search must be one of {', '.join(SEARCH_KINDS)}, got "
                             f"{self.search!r}")
        if not 1 <= self.codes <= MAX_CODES or self.code_stage < 0:
            raise UsageError(f"codes must be in [1, {MAX_CODES}] and code stage >= 0, got "
                             f"{self.codes} and {self.code_stage}")
        if self.finetune_steps < 0 or self.finetune_lr <= 0 or self.finetune_hold < 0:
            raise UsageError("finetune steps must be >= 0, its lr > 0 and its hold >= 0")
        return self

    def resolved(self, from_encoder: bool, scattered: bool = False) -> SearchOptions:
        """These options as they will run: `iters` set where it is None (DEFAULT_ITERS of the
        start, and from the encoder of the mask's kind; `scattered`: missing pixels spread over
        the face) and `encoder_norm` a number or None ("auto": DEFAULT_ENCODER_NORM from the
        encoder, else None; "off": None)."""
        norm = self.encoder_norm
        if isinstance(norm, str):
            norm = DEFAULT_ENCODER_NORM if norm == "auto" and from_encoder else None
        iters = self.iters
        if iters is None:
            key = ("encoder-scattered" if scattered else "encoder") if from_encoder else "random"
            iters = DEFAULT_ITERS[key]
        return dataclasses.replace(self, iters=iters, encoder_norm=norm)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


@dataclass
class EncoderConfig:
    """How an encoder is trained (encoder.train_encoder, `inpaint train-encoder`). Defaults:
    measured on the shipped 64-px face model."""

    filters: int = 32  # first convolution; doubles per stage like the discriminator, at half its
    #                    width: 1.6 M weights, 3 MB in float16 (the package's 30 MB budget)
    steps: int = 6000  # what the shipped encoder was trained for (inpaint/pretrained/model.json,
    #                    docs/search.md): 43 minutes on the 2-core CPU
    batch_size: int = 64  # half generated faces (z known), half real faces
    lr: float = 2e-4  # Adam, the DCGAN rate
    beta1: float = 0.9
    latent_weight: float = 1.0  # weight of the L2 loss on z for generated faces
    seed: int = 0
    precision: str = "auto"  # as training: mixed bfloat16 where native, else float32
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    log_every: int = 20

    def validate(self) -> EncoderConfig:
        for name in ("filters", "steps", "batch_size", "checkpoint_every", "keep_checkpoints",
                     "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"encoder {name} must be a whole number >= 1, got {value!r}")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ConfigError(f"encoder batch size must be even and >= 2 (half generated, half "
                              f"real faces), got {self.batch_size}")
        for name in ("lr", "beta1", "latent_weight"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"encoder {name} must be a finite number >= 0, got {value}")
        if self.lr == 0 or self.beta1 >= 1:
            raise ConfigError("encoder lr must be > 0 and beta1 < 1")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.precision not in TRAIN_PRECISIONS:
            raise ConfigError(f"encoder precision must be one of {', '.join(TRAIN_PRECISIONS)}")
        return self

    # keys that may differ when a run resumes: they schedule the run, not what it learns
    RESUMABLE = ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "precision")


# Keys that may change when a run is resumed: they schedule the run but do not change the models
# or the optimisation, so extending a run (`--epochs 40`) is not a conflict. The strategy only
# decides where the same global batch is computed, so a run may resume on any number of replicas;
# the precision only how the same float32 weights are computed (a run may move to a machine
# without bfloat16).
RESUMABLE_KEYS = frozenset({
    "train.epochs", "train.checkpoint_every", "train.keep_checkpoints", "train.sample_every",
    "train.log_every", "train.strategy", "train.precision",
})


# Seeds reach numpy's legacy seeding through keras.utils.set_random_seed, which takes 32 bits.
MAX_SEED = 2**32 - 1


def _check_finite(sec_name: str, section: object) -> None:
    """ConfigError for a number field holding NaN or an infinity (TOML and `--set` accept `nan`
    and `inf`; every comparison with NaN is false, so range checks alone would let it through)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{sec_name}.{f.name} must be a finite number, got {value}")


def _positive(key: str, value: int | float) -> None:
    if not value > 0:  # written so that NaN fails too
        raise ConfigError(f"{key} must be > 0, got {value}")


def _in_range(key: str, value: int | float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key} must be in [{low}, {high}], got {value}")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _sections(cfg: Config) -> dict[str, object]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def _field_types(section: object) -> dict[str, object]:
    hints = typing.get_type_hints(type(section))
    return {f.name: hints[f.name] for f in dataclasses.fields(section)}


def _type_name(tp: object) -> str:
    if typing.get_origin(tp) is list:
        return "a list of strings"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[tp]


def _coerce(key: str, tp: object, value: object) -> object:
    """Check `value` (as parsed from TOML) against the field type; return it in that type."""
    if typing.get_origin(tp) is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if isinstance(value, str):  # `--set model.deformable=d_conv1,d_conv2`
            return [v for v in (s.strip() for s in value.split(",")) if v]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} expects {_type_name(tp)}, got {value!r}")


def apply_mapping(cfg: Config, mapping: dict, source: str = "config") -> Config:
    """Set every `{section: {key: value}}` in `mapping` on `cfg`, type-checked. Returns `cfg`."""
    sections = _sections(cfg)
    for sec_name, values in mapping.items():
        if sec_name not in sections:
            raise ConfigError(
                f"{source}: unknown section [{sec_name}]; known sections: {', '.join(sections)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{sec_name}] must be a table of keys")
        section = sections[sec_name]
        types_ = _field_types(section)
        for key, value in values.items():
            full = f"{sec_name}.{key}"
            if key not in types_:
                raise ConfigError(
                    f"{source}: unknown key {full!r}; known keys in [{sec_name}]: "
                    f"{', '.join(types_)}"
                )
            setattr(section, key, _coerce(full, types_[key], value))
    return cfg


def load_config(path: str | Path | None = None) -> Config:
    """The defaults, updated by the TOML file at `path` if given. Raises ConfigError."""
    cfg = Config()
    if path is None:
        return cfg.validate()
    path = Path(path)
    try:
        # open_regular: a FIFO would block a plain read forever
        with open_regular(path, error=lambda m: ConfigError(f"cannot read config {m}")) as f:
            text = f.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    return apply_mapping(cfg, mapping, source=str(path)).validate()


def run_config(config_path: str | Path | None = None, run_dir: str | Path | None = None,
               model_dir: str | Path | None = None) -> Config:
    """The config a training run starts from, by precedence: the file `config_path` (--config),
    else the run's own stored config (`run_dir`/config.toml: a resumed run keeps its config),
    else that of the model it starts from (`model_dir`/config.toml, --init-from), else the
    defaults (dcgan64). --set overrides (apply_overrides) come on top."""
    if config_path is None and run_dir is not None and (Path(run_dir) / "config.toml").is_file():
        config_path = Path(run_dir) / "config.toml"
    elif config_path is None and model_dir is not None:
        config_path = Path(model_dir) / "config.toml"
    return load_config(config_path)


def parse_override(text: str) -> tuple[str, str, object]:
    """`"train.epochs=3"` -> `("train", "epochs", 3)`. The value is read as TOML, so `3` is an
    integer, `1e-3` a number, `true` a boolean and `["a", "b"]` a list; anything that is not
    valid TOML is taken as a bare string (`train.precision=mixed_bfloat16`)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or key.count(".") != 1 or not all(key.split(".")):
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    section, name = key.split(".")
    return section, name, value


def apply_overrides(cfg: Config, overrides: typing.Iterable[str]) -> Config:
    """Apply `section.key=value` strings to `cfg` (type-checked), then validate it."""
    for text in overrides:
        section, name, value = parse_override(text)
        apply_mapping(cfg, {section: {name: value}}, source="--set")
    return cfg.validate()


def config_from_dict(mapping: dict, source: str = "config") -> Config:
    return apply_mapping(Config(), mapping, source=source).validate()


def diff_configs(a: Config, b: Config) -> list[tuple[str, object, object]]:
    """`[(key, value_in_a, value_in_b)]` for every key that differs."""
    out = []
    for sec_name, sec_a in a.to_dict().items():
        sec_b = b.to_dict()[sec_name]
        for key, va in sec_a.items():
            if va != sec_b[key]:
                out.append((f"{sec_name}.{key}", va, sec_b[key]))
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps_config(cfg: Config) -> str:
    """TOML text that `load_config` reads back to an equal Config."""
    lines = ["# Resolved configuration written by inpaint; every later command reads it.", ""]
    for sec_name, values in cfg.to_dict().items():
        lines.append(f"[{sec_name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_bytes(Path(path), dumps_config(cfg).encode("utf-8"))

