"""The `inpaint` command line: parse options, load config, call the library, report.

No algorithm lives here. TensorFlow is imported inside the commands that need it, so `inpaint
--help` and `inpaint --version` answer at once. Library errors (InpaintError) become
`Error: <message>` with their exit code (InpaintGroup.invoke): 1, or 2 for the library's
UsageError, the code of click's own usage errors; Ctrl-C is one line and exit 130.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from pathlib import Path

import click

from inpaint import __version__
from inpaint.align import FACE_POLICIES, LANDMARK_SETS, AlignSettings
from inpaint.checkpoints import removed_on_failed_start
from inpaint.config import (
    STRATEGIES,
    TRAIN_PRECISIONS,
    EncoderConfig,
    apply_overrides,
    run_config,
)
from inpaint.detail import DEFAULT_DETAIL, DETAIL_MODES
from inpaint.errors import AlignError, ConfigError, InpaintError, Interrupted, ModelError
from inpaint.files import check_writable
from inpaint.images import expand_inputs, read_faces, require_inputs
from inpaint.masks import FACE_REGIONS, MASK_TYPES, MaskSpec
from inpaint.options import (
    SEED,
    AliasOption,
    FiniteFloatRange,
    check_mask_options,
    check_stem_param,
    detector_options,
    model_option,
    parse_box,
    parse_shard_param,
    quiet_option,
    search_options,
    search_settings,
)
from inpaint.records import lock_folder, recorded_paths
from inpaint.terminal import plain_progress_when_logged

# Command aliases: the reference code's names and shorter spellings.
ALIASES = {"train": "train-dcgan"}


class InpaintGroup(click.Group):
    """A click group with command aliases and a uniform treatment of library errors."""

    def get_command(self, ctx, cmd_name):
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(self, ctx, args):
        # The sub-command's usage line shows the name the user typed (`inpaint train`), not the
        # name it is registered under.
        _, cmd, rest = super().resolve_command(ctx, args)
        return (args[0] if cmd else None), cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InpaintError as exc:  # exit 1; UsageError 2, Interrupted 130 (see errors.py)
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except OSError as exc:  # a full disk, a read-only one, an output path that is a file
            click.echo(f"Error: {_os_error_message(exc)}", err=True)
            ctx.exit(1)


def _os_error_message(exc: OSError) -> str:
    """`path: reason` for an OSError, and what became of the work for the errors of a full or
    read-only disk (every output is written atomically, so what was finished is whole)."""
    where = f"{exc.filename}: " if exc.filename else ""
    text = f"{where}{exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                     errno.EFBIG):
        text += ("; the outputs finished before it are kept whole. Make room (or choose "
                 "another output folder) and re-run to continue")
    return text


def _setup_logging(quiet: bool, tensorflow: bool = True, status: str = "loading TensorFlow",
                   ) -> None:
    """Log to stderr (warnings only with --quiet); TensorFlow is imported later, when the model
    loads (_start_tensorflow), so what can be checked before is, in under a second."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    plain_progress_when_logged()
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("tensorflow", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    _TF_PENDING[:] = [None if quiet else status] if tensorflow else []


_TF_PENDING: list = []  # [the status line to show (None: quiet)] until TensorFlow is imported


def _start_tensorflow() -> None:
    """Import TensorFlow, its C++ start-up lines (oneDNN, CUDA) hidden unless it fails or
    TF_CPP_MIN_LOG_LEVEL=0, after the status line (the import and a model load take seconds)."""
    if _TF_PENDING and (status := _TF_PENDING.pop()):
        click.echo(f"{status} ...", err=True)
    if "tensorflow" not in sys.modules and os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
        _import_tensorflow_quietly()


def _import_tensorflow_quietly() -> None:
    from inpaint.backend import import_tensorflow

    import_tensorflow()


@click.group(cls=InpaintGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="inpaint")
def cli():
    """Semantic face inpainting with a DCGAN.

    \b
    Pipeline:
      inpaint align PHOTOS... -o faces             aligned 64x64 face crops
      inpaint train --dataset faces -o runs/x      train a DCGAN (alias of train-dcgan)
      inpaint complete FACES... -o out             fill holes by latent search
      inpaint fill PHOTOS... --region mouth -o out fill part of the faces in whole photos
      inpaint serve                                the same on a local web page
      inpaint make-gif out -o out/completion.gif   animate the search
      inpaint evaluate FACES...                    score completions against the whole faces

    `inpaint COMMAND --help` shows a command's options and examples.
    """
    # A file name that is not valid UTF-8 reaches Python with surrogates in it; a terminal
    # whose stdout is strict UTF-8 would turn printing it into a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _with_overrides(cfg, sets, shortcuts):
    """`cfg` with the option shortcuts, then the --set overrides, applied (config.apply_overrides);
    a bad override is a usage error (exit 2)."""
    overrides = [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + list(sets)
    try:
        return apply_overrides(cfg, overrides)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--set'") from None


@cli.command("train-dcgan")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(path_type=Path),
              help="Folder of face images (searched recursively); repeat it to train on "
                   "several. Optional when resuming.")
@click.option("-o", "--out-dir", "out", cls=AliasOption, aliases=("--out",), required=True,
              type=click.Path(path_type=Path),
              help="Run directory (created; re-running resumes it).")
@click.option("--init-from", type=click.Path(path_type=Path), metavar="MODEL_DIR",
              help="Start a new run from the weights of an exported model (e.g. the shipped "
                   "one: 'pretrained') with fresh optimizer state; its config is the default.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML config (default: the run's stored config, else dcgan64).")
@click.option("--epochs", type=click.IntRange(min=1), help="Shortcut for --set train.epochs=N.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Shortcut for train.batch_size.")
@click.option("--seed", type=int, help="Shortcut for train.seed.")
@click.option("--precision", type=click.Choice(TRAIN_PRECISIONS),
              help="Shortcut for train.precision (auto: bfloat16 where the hardware has it).")
@click.option("--strategy", type=click.Choice(STRATEGIES),
              help="Shortcut for train.strategy: one device, all local GPUs (mirrored), or the "
                   "machines in TF_CONFIG (multi-worker).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config value, e.g. --set train.lr=1e-4 (repeatable).")
@click.option("--export-only", is_flag=True, help="Export model/ from the latest checkpoint.")
@click.option("--average-decay", type=float, metavar="D",
              help="With --export-only: the generator averaged at decay D after the run, from "
                   "the run's checkpoints (keep enough of them: README, Training), its batch-norm "
                   "statistics recomputed for the averaged weights.")
@click.option("--upto", type=click.IntRange(min=1), metavar="STEP",
              help="With --average-decay: average the checkpoints up to STEP only.")
@click.option("--export-to", type=click.Path(path_type=Path), metavar="DIR",
              help="With --export-only: write the model to DIR instead of OUT/model.")
@quiet_option()
def train_dcgan(datasets, out, init_from, config_path, epochs, batch_size, seed, precision,
                strategy, sets, export_only, average_decay, upto, export_to, quiet):
    """Train a DCGAN on a folder of aligned faces (alias: train).

    Writes config, checkpoints, sample grids, TensorBoard logs (logs/), metrics.jsonl and, at the
    end, the exported model/ into OUT. Re-running the same command resumes; Ctrl-C saves a
    checkpoint first.

    \b
    Examples:
      inpaint align photos -o faces && inpaint train --dataset faces -o runs/mine
      inpaint train --dataset a --dataset b -o runs/mine --init-from pretrained --epochs 10
      inpaint train -o runs/mine --epochs 20        # resume, or extend to 20 epochs
      inpaint train -o runs/mine --export-only --average-decay 0.9998 --export-to m
                        # m/: another weight average, from the run's checkpoints
    """
    _setup_logging(quiet)
    _start_tensorflow()
    from inpaint import train as training

    if not export_only and (average_decay, upto, export_to) != (None, None, None):
        raise click.UsageError("--average-decay, --upto and --export-to go with --export-only")
    if upto is not None and average_decay is None:
        raise click.UsageError("--upto goes with --average-decay")
    shortcuts = {"train.epochs": epochs, "train.batch_size": batch_size, "train.seed": seed,
                 "train.precision": precision, "train.strategy": strategy}
    if init_from is not None:
        init_from = _init_model_dir(init_from)
    cfg = _with_overrides(run_config(config_path, out, init_from), sets, shortcuts)
    chief = training.is_chief(cfg.train.strategy)
    with removed_on_failed_start(out):  # the lock's folder too, and a failed --export-only's
        _lock(out, "train", chief=chief)
        if export_only:
            stored = training.stored_config(out)
            if stored is None:
                raise click.BadParameter(f"{out} holds no training run",
                                         param_hint="'-o' / '--out-dir'")
            if average_decay is None:
                path = training.export_run(out, stored, out_dir=export_to)
            else:
                path = training.export_average(out, stored, average_decay, upto=upto,
                                               out_dir=export_to)
            click.echo(f"exported {path}")
            return
        datasets = list(datasets) or _recorded_dataset(out / "run.json", "dataset")
        result = training.train(datasets, out, cfg, init_from=init_from, progress=not quiet)
    if not chief:
        click.echo(f"worker done at step {result.step}/{result.total_steps}; the chief wrote "
                   f"the run to {out}")
        return
    mins = result.seconds / 60
    click.echo(f"trained {result.step - result.resumed_from} steps in {mins:.1f} min "
               f"(step {result.step}/{result.total_steps}, {result.images_used} images, "
               f"{len(result.skipped)} unreadable files skipped); model: {result.model_dir}")


_ENCODER = EncoderConfig()  # the encoder's defaults, stated once in config.py


@cli.command("train-encoder")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(path_type=Path),
              help="Folder of aligned faces (repeatable). Optional when resuming.")
@click.option("-o", "--out-dir", "out", required=True, type=click.Path(path_type=Path),
              help="Run directory (created; re-running resumes it).")
@model_option("The generator's model directory (default: the shipped model).")
@click.option("--steps", type=click.IntRange(min=1), default=_ENCODER.steps, show_default=True,
              help="Training updates (batches).")
@click.option("--batch-size", type=click.IntRange(min=2), default=_ENCODER.batch_size,
              show_default=True, help="Even: half generated faces, half real ones.")
@click.option("--filters", type=click.IntRange(min=1), default=_ENCODER.filters,
              show_default=True, help="Width of the first convolution (doubles per stage).")
@click.option("--lr", type=FiniteFloatRange(0, 1, min_open=True), default=_ENCODER.lr,
              show_default=True, help="Adam's learning rate.")
@click.option("--seed", type=SEED, default=_ENCODER.seed, show_default=True)
@click.option("--precision", type=click.Choice(TRAIN_PRECISIONS), default=_ENCODER.precision,
              show_default=True, help="auto: mixed bfloat16 where the hardware has it.")
@click.option("--init-from", type=click.Path(path_type=Path), metavar="MODEL_DIR",
              help="Start from this model's encoder ('pretrained': the shipped one's), e.g. for "
                   "a generator trained on from it.")
@quiet_option()
def train_encoder_cmd(datasets, out, model, steps, batch_size, filters, lr, seed, precision,
                      init_from, quiet):
    """Train an encoder that proposes z for a model's generator, so the search starts close.

    Writes encoder.json, checkpoints/, metrics.jsonl and, at the end, model/: the generator's
    model directory with encoder.keras added (use it as --model; complete's --init encoder).
    Re-running the same command resumes; Ctrl-C saves a checkpoint first.

    \b
    Examples:
      inpaint train-encoder --dataset faces -o runs/encoder
      inpaint train-encoder --dataset faces --model runs/mine -o runs/enc2 --init-from pretrained
      inpaint complete faces -o out --model runs/encoder/model --init encoder --iters 50
    """
    _setup_logging(quiet)
    if batch_size % 2:
        raise click.BadParameter("must be even (half generated, half real faces)",
                                 param_hint="'--batch-size'")
    loaded = _load_model(model)
    start = _load_model(_init_model_dir(init_from)) if init_from is not None else None
    from inpaint.encoder import SETTINGS_FILE, train_encoder
    datasets = list(datasets) or _recorded_dataset(out / SETTINGS_FILE, "datasets")
    cfg = EncoderConfig(filters=filters, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                        precision=precision)
    with removed_on_failed_start(out):
        result = train_encoder(loaded, datasets, out, cfg, progress=not quiet, init_from=start)
    click.echo(f"encoder at step {result.step} ({result.seconds / 60:.1f} min this run); "
               f"model with encoder: {result.model_dir}")


def _lock(folder: Path, command: str, shard=None, chief: bool = True) -> None:
    """Hold the lock of the output or run folder until the command ends (records.lock_folder);
    the other workers of a multi-worker training share the chief's run folder."""
    if chief:
        click.get_current_context().with_resource(lock_folder(folder, command, shard=shard))


def _load_model(model: Path | None):
    """Load --model, else (or for "pretrained", as --init-from takes it, unless a folder of that
    name exists) the shipped model (models.shipped_model_dir); exit 2 without either."""
    _start_tensorflow()
    from inpaint.models import load_model, shipped_model_dir

    shipped = model is None or (str(model) == "pretrained" and not model.exists())
    found = shipped_model_dir() if shipped else model
    if found is None:
        raise click.UsageError("--model is required: no pretrained model is installed")
    return load_model(found)


def _report_failed(failed: list[tuple[str, str]]) -> None:
    """After a command's summary line: each input that failed, on stderr, then exit 1."""
    if failed:
        for _, reason in failed:
            click.echo(f"  failed: {reason}", err=True)
        raise SystemExit(1)


_MASK = MaskSpec()  # the mask options' defaults


@cli.command("complete")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--out-dir", "out_dir", cls=AliasOption, aliases=("--outDir",), required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Output folder (created).")
@model_option()
@click.option("--mask-type", "mask_type", cls=AliasOption, aliases=("--maskType",),
              default=_MASK.kind, show_default=True, type=click.Choice(MASK_TYPES))
@click.option("--center-scale", default=_MASK.center_scale, show_default=True,
              type=FiniteFloatRange(0, 0.5, max_open=True),
              help="Margin of the center hole (0.25: the middle half).")
@click.option("--missing-fraction", default=_MASK.missing_fraction, show_default=True,
              type=FiniteFloatRange(0, 1),
              help="Fraction of pixels missing with --mask-type random.")
@click.option("--mask", "mask_path", type=click.Path(exists=True, path_type=Path),
              help="Mask PNG (white = known) or a folder of per-image masks named by stem.")
@click.option("--mask-box", callback=parse_box, metavar="X,Y,W,H",
              help="A rectangular hole in model pixels.")
@search_options(shift=True)
@click.option("--blend/--no-blend", default=True, show_default=True,
              help="Poisson-blend G(z) into the hole.")
@click.option("--sheet-scale", type=click.IntRange(1, 16),
              help="Magnify the faces of sheet.png N times (nearest neighbour)  [default: so "
                   "that a face is at least 192 px wide]")
@click.option("--out-interval", "out_interval", cls=AliasOption, aliases=("--outInterval",),
              default=10, show_default=True,
              type=click.IntRange(min=1), help="Iterations between progress frames.")
@click.option("--batch-size", "batch_size", cls=AliasOption, aliases=("--batchSize",),
              default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--overwrite", is_flag=True, help="Redo images already completed in OUT_DIR.")
@click.option("--shard", callback=parse_shard_param, metavar="I/N",
              help="Complete only share I of N (1 <= I <= N): N machines given the same IMAGES "
                   "and OUT_DIR split them, each image to one.")
@quiet_option("No progress bars or info messages.")
def complete_cmd(images, out_dir, model, mask_type, center_scale, missing_fraction, mask_path,
                 mask_box, blend, sheet_scale, out_interval, batch_size, overwrite, shard, quiet,
                 **search):
    """Fill the missing part of each face by searching the generator's latent space.

    IMAGES are files, folders or globs of aligned faces at the model's size (others are
    centre-cropped and resized, with a warning). Writes completed/, blended/, generated/,
    masked/, masks/, progress/, hats/, frames/, sheet.png, log.jsonl and run.json into OUT_DIR.

    \b
    Examples:
      inpaint complete data/samples -o out                 # centre hole, the shipped model
      inpaint complete faces -o out --model runs/mine --mask-type random
      inpaint complete face.png -o out --mask my_mask.png  # white = known, black = fill
      inpaint complete faces -o out --mask-box 20,30,24,12 # X,Y,W,H in model pixels
    """
    require_inputs(images)
    check_mask_options(click.get_current_context(), mask_path, mask_box)
    _setup_logging(quiet, status="loading TensorFlow and the model")
    inputs = expand_inputs(images, exclude=out_dir)
    if not inputs:
        raise click.BadParameter("no images match", param_hint="IMAGES")
    if mask_path is not None and not (mask_path.is_file() or mask_path.is_dir()):
        raise click.BadParameter(f"{mask_path} is not a regular file or a folder",
                                 param_hint="'--mask'")
    opts = search_settings(search)
    spec = MaskSpec(kind=mask_type, center_scale=center_scale, missing_fraction=missing_fraction,
                    file=mask_path if mask_path and mask_path.is_file() else None,
                    folder=mask_path if mask_path and mask_path.is_dir() else None,
                    box=mask_box, seed=opts.seed)
    loaded = _load_model(model)
    from inpaint.batch import complete_files
    _lock(out_dir, "complete", shard=shard)
    try:
        summary = complete_files(inputs, out_dir, loaded, mask=spec, options=opts,
                                 batch_size=batch_size, blend_result=blend,
                                 out_interval=out_interval, overwrite=overwrite,
                                 progress=not quiet, shard=shard, sheet_scale=sheet_scale)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the images completed so far are in {out_dir}; re-run "
                          "the same command to complete the rest") from None
    share = (f" (shard {shard[0]}/{shard[1]}; {summary.other_shards} inputs left to the others)"
             if shard else "")
    click.echo(f"completed {len(summary.completed)}, already done {len(summary.skipped)}, "
               f"failed {len(summary.failed)} in {summary.seconds:.1f} s -> {out_dir}{share}")
    _report_failed(summary.failed)


@cli.command("fill")
@click.argument("photos", nargs=-1, required=True, metavar="PHOTO...")
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the filled photos, compare/ and fill.jsonl (created).")
@click.option("--region", "regions", multiple=True, type=click.Choice(list(FACE_REGIONS)),
              help="Fill this part of each face (repeatable); left/right as seen in the photo.")
@click.option("--grow", type=FiniteFloatRange(min=0, max=1000), metavar="PX",
              help="Grow each region by PX pixels  [default: a tenth of the eye-corner distance]")
@click.option("--mask", "mask_path", type=click.Path(exists=True, path_type=Path),
              help="A mask the size of the photo (white = keep, black = fill), or a folder of "
                   "masks named by the photos' stems.")
@click.option("--box", callback=parse_box, metavar="X,Y,W,H",
              help="Fill this rectangle, in photo pixels.")
@click.option("--faces", default="largest", show_default=True,
              type=click.Choice(["largest", "all"]), help="Fill the largest face, or every face.")
@click.option("--detail", default=DEFAULT_DETAIL, show_default=True, type=click.Choice(DETAIL_MODES),
              help="context: add the photo's own fine detail to the fill; none: the plain fill.")
@click.option("--overwrite", is_flag=True, help="Fill again what OUT_DIR holds, any settings.")
@detector_options()
@model_option()
@search_options()
@quiet_option()
def fill_cmd(photos, out_dir, regions, grow, mask_path, box, faces, detail, overwrite, detector,
             upsample, min_score, model, quiet, **search):
    """Fill part of the face(s) in whole photos and write the photos back, same size.

    Each face is detected and aligned as `inpaint align` does, the region is completed by the
    latent search as `inpaint complete` does, and the result is mapped back and blended into the
    photo at its full resolution. Pixels outside the region are unchanged (bit-exact in PNG, BMP,
    TIFF and WebP; JPEG output is re-encoded at quality 95). Writes OUT_DIR/<stem>.<ext>,
    OUT_DIR/compare/<stem>.png (before | after) and OUT_DIR/fill.jsonl.

    \b
    Examples:
      inpaint fill photo.jpg --region mouth -o out
      inpaint fill group.jpg --faces all --region eyes --grow 6 -o out
      inpaint fill photos/ --mask masks/ -o out        # masks/<stem>.png, black = fill
      inpaint fill photo.png --box 120,200,80,40 -o out
    """
    _setup_logging(quiet)
    from inpaint.fill import fill_files
    require_inputs(photos)
    if not (regions or mask_path or box):
        raise click.UsageError("say where to fill: --region, --mask or --box")
    inputs = expand_inputs(photos, exclude=out_dir)  # never the outputs of an earlier run
    if not inputs:
        raise click.BadParameter("no images match", param_hint="PHOTO...")
    opts = search_settings(search)
    _lock(out_dir, "fill")
    loaded = _load_model(model)
    settings = AlignSettings(size=loaded.config.model.image_size, faces=faces, detector=detector,
                             upsample=upsample, min_score=min_score)
    try:
        summary = fill_files(inputs, out_dir, loaded, regions=regions, grow=grow,
                             mask=mask_path, box=box, faces=faces, align_settings=settings,
                             options=opts, progress=not quiet, detail=detail,
                             overwrite=overwrite)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the photos filled so far are in {out_dir}") from None
    click.echo(f"filled {len(summary.filled)}, already done {len(summary.skipped)}, failed "
               f"{len(summary.failed)} in {summary.seconds:.1f} s -> {out_dir}")
    _report_failed(summary.failed)


@cli.command("make-gif")
@click.argument("src", nargs=-1, required=True, metavar="SRC...")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="OUT.gif, or .webp / .mp4 (the suffix picks the format).")
@click.option("--fps", default=10.0, show_default=True, type=FiniteFloatRange(0, min_open=True),
              help="Frames per second (GIF: at most 50).")
@click.option("--loop", default=0, show_default=True, type=click.IntRange(min=0),
              help="How many times it plays; 0 loops forever (GIF and WebP).")
@click.option("--scale", default=2, show_default=True, type=click.IntRange(1, 16),
              help="Integer nearest-neighbour upscaling.")
@click.option("--hold-last", default=1.0, show_default=True, type=FiniteFloatRange(0, 600),
              help="Extra seconds the last frame stays on screen.")
@click.option("--image", metavar="STEM", callback=check_stem_param,
              help="Animate one image's frames, SRC/frames/STEM/, instead of progress/.")
@quiet_option()
def make_gif_cmd(src, output, fps, loop, scale, hold_last, image, quiet):
    """Animate the completion's frames into OUT.gif (or .webp or .mp4).

    SRC is the output directory of `inpaint complete` (its progress/ grids, or with --image STEM
    that image's frames/STEM/), a directory of frames, a quoted glob, or frame files. Frames are
    sorted by the numbers in their names (9 before 10, 0050 before 0100) and must all be the same
    size. Each GIF frame gets its own dithered 256-colour palette. With --image, the frames are
    Poisson-blended like blended/STEM.png when `complete` blended.

    \b
    Examples:
      inpaint make-gif out -o out/completion.gif               # the first batch's progress
      inpaint make-gif out --image 182744 -o face.gif --scale 4  # one face, blended
      inpaint make-gif 'out/hats/*.png' -o hats.webp --fps 5   # any frames: folder, glob, files
    """
    _setup_logging(quiet, tensorflow=False)
    from inpaint import gif

    suffix = output.suffix.lower()
    if suffix not in gif.SUFFIXES:
        raise click.BadParameter(f"the output must end in {', '.join(gif.SUFFIXES)}",
                                 param_hint="'-o' / '--output'")
    if fps < gif.MIN_FPS:
        raise click.BadParameter(f"at least {gif.MIN_FPS:g} fps (a frame may stay at most "
                                 f"{1 / gif.MIN_FPS:g} s)", param_hint="'--fps'")
    if suffix == ".gif" and fps > gif.MAX_GIF_FPS:
        raise click.BadParameter(f"a GIF plays at most {gif.MAX_GIF_FPS:g} fps (write .mp4 or "
                                 f".webp for more)", param_hint="'--fps'")
    t0 = time.perf_counter()
    result = gif.make_animation(src, output, image=image, fps=fps, loop=loop, scale=scale,
                                hold_last=hold_last, progress=not quiet)
    click.echo(f"wrote {result.path}: {result.frames} frames, {result.width}x{result.height}, "
               f"plays {result.seconds:.1f} s (made in {time.perf_counter() - t0:.1f} s)")


_ALIGN = AlignSettings()  # the aligner's defaults


@cli.command("align")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--out-dir", required=True,
              type=click.Path(file_okay=False, writable=True, path_type=Path),
              help="Folder for the aligned PNG faces and align.jsonl (created).")
@click.option("--size", default=_ALIGN.size, show_default=True, type=click.IntRange(8, 4096),
              help="Side of the square aligned face, in pixels.")
@click.option("--landmarks", default=_ALIGN.landmarks, show_default=True,
              type=click.Choice(list(LANDMARK_SETS)),
              help="The three landmarks pinned to the template.")
@click.option("--faces", default=_ALIGN.faces, show_default=True,
              type=click.Choice(FACE_POLICIES),
              help="Per photo: the largest face, every face (STEM_K.png), or none if several.")
@detector_options("dlib's HOG frontal detector, or its CNN detector (far slower on a CPU).")
@click.option("--predictor", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="dlib 68-point model file (default: the face-recognition-models copy).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Processes aligning in parallel.")
@click.option("--overwrite", is_flag=True, help="Realign inputs already done in OUT_DIR.")
@click.option("--strict", is_flag=True, help="Exit 1 if any input has no face or fails.")
@quiet_option()
def align_cmd(inputs, out_dir, size, landmarks, faces, detector, upsample, min_score, predictor,
              workers, overwrite, strict, quiet):
    """Detect, landmark and align faces: photos -> SIZE x SIZE PNG crops.

    INPUT: image files, folders (searched recursively) or quoted globs. Outputs mirror the inputs'
    sub-folders inside OUT_DIR; OUT_DIR/align.jsonl records, per input, the status, the detector
    box, the 68 landmarks and the 2x3 transform. Re-running skips the inputs already done.
    Needs dlib and its 68-point model: pip install 'inpaint[align]'.

    \b
    Examples:
      inpaint align data/photos -o faces                 # every photo below, 64x64 faces
      inpaint align "photos/**/*.jpg" -o faces --workers 2
      inpaint align group.jpg -o faces --faces all       # group_0.png, group_1.png, ...
      inpaint align photos -o faces96 --size 96 --strict # exit 1 if a photo has no face
    """
    require_inputs(inputs)
    _setup_logging(quiet, tensorflow=False)
    from inpaint.align import align_batch

    settings = AlignSettings(
        size=size, landmarks=landmarks, faces=faces, detector=detector, upsample=upsample,
        min_score=min_score,
        predictor=str(predictor) if predictor else None)
    s = align_batch(inputs, out_dir, settings, workers=workers, overwrite=overwrite,
                          progress=not quiet)
    c = s.counts
    rate = f", {s.images_per_s:.1f} images/s" if s.processed else ""
    faces_word = "face" if s.faces == 1 else "faces"
    click.echo(f"aligned {c['aligned']} of {s.total} inputs: {s.faces} {faces_word} in {out_dir} "
               f"({s.processed} processed in {s.seconds:.1f} s{rate}; {s.resumed} already done)")
    several = (f"photos with several faces skipped: {c['skipped-multi']}" if faces == "skip-multi"
               else f"faces left out: {s.faces_left_out} in {s.photos_with_faces_left_out} "
                    f"photos with several faces" + (" (--faces all keeps them)"
                                                    if s.faces_left_out else ""))
    click.echo(f"no face: {c['no-face']}, {several}, errors: {c['error']}")
    limit = 20
    for path, status, message in s.problems[:limit]:
        click.echo(f"  {status}: {message if status == 'error' else path}")
    if len(s.problems) > limit:
        click.echo(f"  ... and {len(s.problems) - limit} more")
    click.echo(f"records: {s.records_path}")
    failed = c["no-face"] + c["error"]
    if strict and failed:
        raise AlignError(f"--strict: {failed} of {s.total} inputs have no aligned face "
                               f"({c['no-face']} without a face, {c['error']} errors)")


@cli.command("evaluate")
@click.argument("images", nargs=-1, required=True)
@model_option()
@click.option("--mask-type", "mask_types", cls=AliasOption, aliases=("--maskType",),
              multiple=True,
              type=click.Choice([k for k in MASK_TYPES if k != "full"]),
              help="Repeatable (default: center, random, left).")
@search_options()
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N images.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JSON.")
@quiet_option()
def evaluate_cmd(images, model, mask_types, batch_size, limit, json_path, quiet, **search):
    """Mask whole faces, complete them and score the results.

    Reports, per mask type, PSNR and SSIM over the image, mean L1 inside the hole and the detail
    ratio (log2 of the hole's gradient energy against the truth's: 0 = as detailed, a smooth
    fill far below 0) for the completed and blended outputs and for two baselines (mean-colour
    and harmonic fill), with seconds per image, as a markdown table. IMAGES should be aligned
    faces at the model's size (others are centre-cropped and resized, with a warning).

    \b
    Examples:
      inpaint evaluate faces --limit 32 --mask-type center
      inpaint evaluate faces --model runs/mine --json scores.json
      inpaint evaluate faces --optimizer momentum --context-weighting none --iters 1000
    """
    require_inputs(images)
    _setup_logging(quiet, status="loading TensorFlow and the model")
    from inpaint.evaluate import DEFAULT_MASK_TYPES, evaluate_masks, markdown_table, write_report
    if json_path:  # before the work, not after it
        check_writable(json_path)
    paths = expand_inputs(images)[:limit]
    loaded = _load_model(model)
    faces, stems, failed = read_faces(paths, loaded.config.model.image_size)
    if not len(faces):
        reasons = "; ".join(failed[:10]) + (f"; and {len(failed) - 10} more"
                                             if len(failed) > 10 else "")
        raise click.BadParameter(f"no readable images ({reasons or 'none given'})",
                                 param_hint="IMAGES")
    opts = search_settings(search)
    results = evaluate_masks(loaded, faces, stems, mask_types or DEFAULT_MASK_TYPES, opts,
                             batch_size=batch_size, progress=not quiet)
    click.echo(markdown_table(results))
    for reason in failed:
        click.echo(f"skipped: {reason}", err=True)
    if json_path:
        write_report(json_path, results, opts, loaded, len(faces), failed)


def _recorded_dataset(record: Path, key: str) -> list[Path]:
    """The dataset folders an earlier run recorded under `key` of `record` (its run.json or
    encoder.json)."""
    found = recorded_paths(record, key)
    if found is None:
        raise click.UsageError("--dataset is required (no earlier run records one)")
    return found


def _init_model_dir(path: Path) -> Path:
    """The model directory `--init-from` names (models.model_dir_named: "pretrained" is the
    shipped model); exit 2 when it names none."""
    from inpaint.models import model_dir_named

    try:
        return model_dir_named(path)
    except ModelError as exc:
        raise click.BadParameter(str(exc), param_hint="'--init-from'") from None


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@model_option()
def serve_cmd(host, port, model):
    """A local web page to fill a photo by painting over it, and its HTTP API (README: serve).
    Example: `inpaint serve`, then open http://127.0.0.1:8000"""
    _setup_logging(False, status="loading the model")
    try:
        from inpaint.serve import create_app, serve
    except ImportError as exc:
        raise InpaintError(f"inpaint serve needs its web libraries ({exc.name}): "
                           "pip install 'inpaint[serve]'") from None
    serve(create_app(_load_model(model)), host, port,
          on_ready=lambda url: click.echo(f"open {url}  (Ctrl-C stops)"))


def main() -> None:
    cli(prog_name="inpaint")


if __name__ == "__main__":
    main()
