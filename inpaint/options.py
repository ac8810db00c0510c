"""The command line's shared options: click parameter types (finite floats, seeds, old spellings
kept working) and the options several commands take, each declared once (--quiet, --model, the
face detector's, the latent search's), with their defaults and choices read from the library.
Like cli.py it imports no TensorFlow, so `inpaint --help` answers at once.
"""

from __future__ import annotations

import math
from pathlib import Path

import click
from click.core import ParameterSource

from inpaint.align import DEFAULT_MIN_SCORE, DETECTORS, MIN_SCORE_FLOOR
from inpaint.config import (
    CONTEXT_WEIGHTINGS,
    DEFAULT_ENCODER_NORM,
    DEFAULT_ITERS,
    DEFAULT_LR,
    ENCODER_NORM_WORDS,
    INITS,
    MAX_CODES,
    MAX_ENCODER_NORM,
    MAX_ITERS,
    MAX_RESTARTS,
    OPTIMIZERS,
    PERCEPTUAL,
    SEARCH_KINDS,
    SEARCH_PRECISIONS,
    SearchOptions,
)
from inpaint.errors import UsageError
from inpaint.records import check_stem, parse_shard


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses NaN and the infinities (every comparison with NaN is
    false, so click's own bounds let `nan` through)."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{rv} is not a finite number.", param, ctx)
        return rv


class EncoderNorm(click.ParamType):
    """--encoder-norm: "auto", "off", or a finite number in (0, MAX_ENCODER_NORM]."""

    name = "auto|off|F"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() in ENCODER_NORM_WORDS:
            return value.strip().lower()
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and 0 < number <= MAX_ENCODER_NORM):
            self.fail(f"{value!r} is not auto, off or a number in (0, {MAX_ENCODER_NORM}].",
                      param, ctx)
        return number


# Seeds: non-negative, and within the 32 bits numpy's legacy seeding (keras) accepts.
SEED = click.IntRange(0, 2**32 - 1)


class AliasOption(click.Option):
    """An option with old spellings (the reference's camelCase, earlier names) that are still
    accepted but not shown: `--help` and error messages name only the current ones."""

    def __init__(self, param_decls, aliases: tuple[str, ...] = (), **attrs):
        super().__init__(list(param_decls) + list(aliases), **attrs)
        self.aliases = tuple(aliases)

    def _shown(self, method, ctx):
        every = self.opts
        self.opts = [o for o in every if o not in self.aliases]
        try:
            return method(ctx)
        finally:
            self.opts = every

    def get_help_record(self, ctx):
        return self._shown(super().get_help_record, ctx)

    def get_error_hint(self, ctx):
        return self._shown(super().get_error_hint, ctx)


def decorators(options: list):
    """One decorator applying `options` (click.option decorators) in the order listed: the
    order --help shows them in."""

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


QUIET_HELP = "No progress bar or info messages."


def quiet_option(help: str | None = QUIET_HELP):
    """-q/--quiet: warnings and errors only, no progress bars (cli._setup_logging)."""
    return click.option("-q", "--quiet", is_flag=True, help=help)


MODEL_HELP = ("Training run directory or its model/ export (default, or 'pretrained': the shipped "
              "model).")


def model_option(help: str = MODEL_HELP):
    """--model: the model directory a command uses (cli._load_model: default the shipped one)."""
    return click.option("--model", type=click.Path(path_type=Path), help=help)


def detector_options(detector_help: str | None = None):
    """--detector, --upsample and --min-score: how faces are found (align.AlignSettings)."""
    return decorators([
        click.option("--detector", default="hog", show_default=True,
                     type=click.Choice(DETECTORS), help=detector_help),
        click.option("--upsample", default=1, show_default=True, type=click.IntRange(0, 4),
                     help="Times the photo is doubled before detection (finds smaller faces, "
                          "slower)."),
        click.option("--min-score", type=FiniteFloatRange(min=MIN_SCORE_FLOOR),
                     default=DEFAULT_MIN_SCORE,
                     help=f"Drop detections scoring below this.  [default: {DEFAULT_MIN_SCORE}]"),
    ])


# The search's defaults and choices come from the library (config.py needs no TensorFlow).
_SEARCH = SearchOptions()


def _start_and_kind_options() -> list:
    """Where the search starts (--init) and what it changes (--search and its settings)."""
    return [
        click.option("--init", default=_SEARCH.init, show_default=True, type=click.Choice(INITS),
                     help="Start from the model's encoder (inpaint train-encoder) or a random z; "
                          "auto: the encoder when the model has one. With --restarts > 1 the "
                          "first restart uses the encoder."),
        click.option("--encoder-norm", type=EncoderNorm(), default=_SEARCH.encoder_norm,
                     show_default=True,
                     help="Rescale the encoder's proposed z to this fraction of a random z's "
                          "typical length before the search: sharper, less average fills for "
                          "a little PSNR (docs/search.md). auto: "
                          f"{DEFAULT_ENCODER_NORM} when the search starts from the encoder; "
                          "off: as proposed."),
        click.option("--search", default=_SEARCH.search, show_default=True,
                     type=click.Choice(SEARCH_KINDS),
                     help="z: search z only; multi-code: several codes mixed by learned channel "
                          "weights (closer fit, best on scattered pixels); finetune: then tune the "
                          "generator's weights a few steps per image, held close to the trained "
                          "ones (slowest, closest fit)."),
        click.option("--codes", default=_SEARCH.codes, show_default=True,
                     type=click.IntRange(min=1, max=MAX_CODES),
                     help="Latent codes per face with --search multi-code."),
        click.option("--finetune-steps", default=_SEARCH.finetune_steps, show_default=True,
                     type=click.IntRange(min=0), help="Steps of --search finetune per image."),
        click.option("--finetune-lr", default=_SEARCH.finetune_lr, show_default=True,
                     type=FiniteFloatRange(min=0, min_open=True),
                     help="Adam step size on the weights with --search finetune."),
    ]


def search_options(shift: bool = False):
    """The latent-search options every searching command takes (`search_settings` turns them
    into SearchOptions); `shift` adds --optimize-shift and --max-shift."""
    options = [
        click.option("--iters", default=_SEARCH.iters, type=click.IntRange(min=0, max=MAX_ITERS),
                     help="Search iterations (default: {random} from a random start, {encoder} "
                          "from the encoder's, {encoder-scattered} from the encoder's on random "
                          "and grid masks; see docs/search.md).".format(**DEFAULT_ITERS)),
        click.option("--optimizer", default=_SEARCH.optimizer, show_default=True,
                     type=click.Choice(OPTIMIZERS)),
        click.option("--lr", type=FiniteFloatRange(min=0, min_open=True),
                     help="Step size (default {} for adam, {} for momentum).".format(
                         DEFAULT_LR["adam"], DEFAULT_LR["momentum"])),
        click.option("--momentum", default=_SEARCH.momentum, show_default=True,
                     type=FiniteFloatRange(0, 1)),
        click.option("--lam", default=_SEARCH.lam, show_default=True,
                     type=FiniteFloatRange(min=0), help="Weight of the perceptual loss."),
        click.option("--context-weighting", default=_SEARCH.context_weighting,
                     show_default=True, type=click.Choice(CONTEXT_WEIGHTINGS)),
        click.option("--perceptual", default=_SEARCH.perceptual, show_default=True,
                     type=click.Choice(PERCEPTUAL),
                     help="-log D(G(z)), or the paper's log(1 - D(G(z)))."),
        click.option("--restarts", default=_SEARCH.restarts, show_default=True,
                     type=click.IntRange(min=1, max=MAX_RESTARTS),
                     help="Random starting points per face; the lowest final loss wins."),
        click.option("--seed", default=_SEARCH.seed, show_default=True, type=SEED),
        click.option("--precision", default=_SEARCH.precision, show_default=True,
                     type=click.Choice(SEARCH_PRECISIONS),
                     help="Compute precision of the search (auto: bfloat16 where the "
                          "hardware has it, else float32)."),
    ] + _start_and_kind_options()
    if shift:
        options += [
            click.option("--optimize-shift", is_flag=True,
                         help="Also search a sub-pixel translation of G(z) per image (faces off "
                              "the training alignment)."),
            click.option("--max-shift", default=_SEARCH.max_shift, show_default=True,
                         type=FiniteFloatRange(min=0),
                         help="Largest shift in pixels along each axis, with --optimize-shift."),
        ]
    return decorators(options)


SEARCH_NAMES = ("iters", "optimizer", "lr", "momentum", "lam", "context_weighting",
                "perceptual", "restarts", "seed", "init", "encoder_norm", "search", "codes",
                "finetune_steps", "finetune_lr", "precision", "optimize_shift", "max_shift")


def search_settings(kw: dict) -> SearchOptions:
    """SearchOptions from the options `search_options` declares (popped from `kw`)."""
    return SearchOptions(**{n: kw.pop(n) for n in SEARCH_NAMES if n in kw})


def parse_box(ctx, param, value):
    """The click callback of a box option: "X,Y,W,H" -> (x, y, w, h) ints; None when absent."""
    if value is None:
        return None
    try:
        box = tuple(int(v) for v in value.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise click.BadParameter("expected X,Y,W,H (four integers)")
    return box


def checked_by(check):
    """A click callback over a library check of one option's value (records.parse_shard,
    records.check_stem): an absent option passes; the check's UsageError becomes click's
    BadParameter, so that the message names the option."""

    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return check(value)
        except UsageError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


parse_shard_param = checked_by(parse_shard)
check_stem_param = checked_by(check_stem)


def check_mask_options(ctx: click.Context, mask_path, mask_box) -> None:
    """Refuse masks given two ways (exit 2); warn about options the chosen mask ignores."""
    def given(name):
        return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)

    sources = [name for name, on in (("--mask", mask_path is not None),
                                     ("--mask-box", mask_box is not None),
                                     ("--mask-type", given("mask_type"))) if on]
    if len(sources) > 1:
        raise click.UsageError(f"give one of --mask-type, --mask and --mask-box, not "
                               f"{' and '.join(sources)}")
    kind = ctx.params["mask_type"] if not sources or sources == ["--mask-type"] else None
    for opt, name, used, needs in (
            ("--center-scale", "center_scale", kind == "center", "--mask-type center"),
            ("--missing-fraction", "missing_fraction", kind == "random", "--mask-type random"),
            ("--max-shift", "max_shift", ctx.params["optimize_shift"], "--optimize-shift")):
        if given(name) and not used:
            click.echo(f"Warning: {opt} is ignored: it applies only with {needs}", err=True)
