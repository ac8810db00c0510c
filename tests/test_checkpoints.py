"""Damaged checkpoints: a resumed run falls back to the newest one that loads, sets the damaged
ones aside instead of keeping them under a checkpoint's name, and refuses to start over silently
when none loads (that would rewrite metrics.jsonl and lose the run's history)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from inpaint.checkpoints import list_checkpoints
from inpaint.cli import cli
from inpaint.train import GANTrainer, prepare_run_dir, train

from .conftest import snapshot, tiny_config, write_faces


def halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def trained_run(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny run of 8 steps: checkpoints at steps 5 and 8 (checkpoint_every 5, keep 2)."""
    data = write_faces(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    cfg = tiny_config()
    prepare_run_dir(run, cfg)
    train(data, run, cfg, progress=False)
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt-0000005",
                                                                      "ckpt-0000008"]
    return run, data


def test_a_run_whose_checkpoints_are_all_unreadable_is_refused_and_left_as_it_was(tmp_path):
    run, data = trained_run(tmp_path)
    for ckpt in list_checkpoints(run / "checkpoints"):
        halve(ckpt / "generator.weights.h5")
    before = snapshot(run)
    r = CliRunner().invoke(cli, ["train", "--out", str(run), "--dataset", str(data), "-q"])
    assert r.exit_code == 1, r.output
    assert "Error: none of the 2 checkpoints" in r.output
    assert "To start it over from step 0, move" in r.output
    assert snapshot(run) == before  # metrics.jsonl, checkpoints, model: nothing rewritten


def test_a_damaged_newest_checkpoint_is_set_aside_and_written_again(tmp_path):
    run, data = trained_run(tmp_path)
    ckpts = run / "checkpoints"
    halve(ckpts / "ckpt-0000008" / "generator.weights.h5")
    result = train(data, run, tiny_config(), progress=False)
    assert result.resumed_from == 5
    assert [p.name for p in list_checkpoints(ckpts)] == ["ckpt-0000005", "ckpt-0000008"]
    assert (ckpts / "damaged-ckpt-0000008" / "generator.weights.h5").is_file()  # kept to inspect
    trainer = GANTrainer(tiny_config())
    assert trainer.restore_latest(ckpts) == ckpts / "ckpt-0000008"  # whole again
    assert trainer.step == 8


def test_a_checkpoint_with_nan_weights_counts_as_damaged(tmp_path):
    import h5py
    import numpy as np

    run, _ = trained_run(tmp_path)
    ckpts = run / "checkpoints"
    with h5py.File(ckpts / "ckpt-0000008" / "generator.weights.h5", "r+") as f:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(obj)
                     if isinstance(obj, h5py.Dataset) and obj.size else None)
        datasets[0][...] = np.nan
    trainer = GANTrainer(tiny_config())
    assert trainer.restore_latest(ckpts) == ckpts / "ckpt-0000005"
    assert trainer.damaged == {"ckpt-0000008"}
