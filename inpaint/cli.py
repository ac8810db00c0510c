"""The `inpaint` command line: parse options, load config, call the library, report.

No algorithm lives here. TensorFlow is imported inside the commands that need it, so `inpaint
--help` and `inpaint --version` answer at once. Library errors (InpaintError) become
`Error: <message>` with exit 1; bad usage is exit 2 (click); Ctrl-C is one line and exit 130.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from inpaint import __version__
from inpaint.errors import InpaintError

# Command aliases: the reference code's names and shorter spellings.
ALIASES = {"train": "train-dcgan"}


class InpaintGroup(click.Group):
    """A click group with command aliases and a uniform treatment of library errors."""

    def get_command(self, ctx, cmd_name):
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(self, ctx, args):
        _, cmd, rest = super().resolve_command(ctx, args)
        return cmd.name if cmd else None, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InpaintError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _setup_logging(quiet: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ start-up chatter
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("tensorflow", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@click.group(cls=InpaintGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="inpaint")
def cli():
    """Semantic face inpainting with a DCGAN.

    \b
    Pipeline:
      inpaint align PHOTOS... --out-dir faces      aligned 64x64 face crops
      inpaint train --dataset faces --out runs/x   train a DCGAN (alias of train-dcgan)
      inpaint complete IMGS... --outDir out        fill holes by latent search
      inpaint make-gif out -o out/completion.gif   animate the search
    """


def _build_config(config_path, sets, shortcuts, base_run: Path | None):
    """Resolve the config: --config file, else the run's stored config, else the defaults; then
    the option shortcuts, then --set overrides. Bad overrides are usage errors (exit 2)."""
    from inpaint.config import apply_overrides, load_config
    from inpaint.errors import ConfigError

    if config_path is not None:
        cfg = load_config(config_path)
    elif base_run is not None and (base_run / "config.toml").is_file():
        cfg = load_config(base_run / "config.toml")
    else:
        cfg = load_config(None)
    overrides = [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + list(sets)
    try:
        return apply_overrides(cfg, overrides)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--set'") from None


@cli.command("train-dcgan")
@click.option("--dataset", type=click.Path(path_type=Path),
              help="Folder of face images (searched recursively). Optional when resuming.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Run directory (created; re-running resumes it).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML config (default: the run's stored config, else dcgan64).")
@click.option("--epochs", type=click.IntRange(min=1), help="Shortcut for --set train.epochs=N.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Shortcut for train.batch_size.")
@click.option("--seed", type=int, help="Shortcut for train.seed.")
@click.option("--precision", type=click.Choice(["float32", "mixed_bfloat16", "mixed_float16"]),
              help="Shortcut for train.precision.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config value, e.g. --set train.lr=1e-4 (repeatable).")
@click.option("--export-only", is_flag=True, help="Export model/ from the latest checkpoint.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or info messages.")
def train_dcgan(dataset, out, config_path, epochs, batch_size, seed, precision, sets, export_only,
                quiet):
    """Train a DCGAN on a folder of aligned faces (alias: train).

    Writes config, checkpoints, sample grids, TensorBoard logs (logs/), metrics.jsonl and, at the
    end, the exported model/ into OUT. Re-running the same command resumes; Ctrl-C saves a
    checkpoint first.
    """
    _setup_logging(quiet)
    from inpaint import train as training

    shortcuts = {"train.epochs": epochs, "train.batch_size": batch_size, "train.seed": seed,
                 "train.precision": precision}
    cfg = _build_config(config_path, sets, shortcuts, out)
    if export_only:
        stored = training.stored_config(out)
        if stored is None:
            raise click.BadParameter(f"{out} holds no training run", param_hint="'--out'")
        path = training.export_run(out, stored)
        click.echo(f"exported {path}")
        return
    if dataset is None:
        dataset = _recorded_dataset(out)
    training.prepare_run_dir(out, cfg)
    result = training.train(dataset, out, cfg, progress=not quiet)
    mins = result.seconds / 60
    click.echo(f"trained {result.step - result.resumed_from} steps in {mins:.1f} min "
               f"(step {result.step}/{result.total_steps}, {result.images_used} images, "
               f"{len(result.skipped)} unreadable files skipped); model: {result.model_dir}")


def _recorded_dataset(run_dir: Path) -> Path:
    import json

    try:
        return Path(json.loads((run_dir / "run.json").read_text())["dataset"])
    except (OSError, ValueError, KeyError):
        raise click.UsageError("--dataset is required (no earlier run records one)") from None


def main() -> None:
    cli(prog_name="inpaint")


if __name__ == "__main__":
    main()
