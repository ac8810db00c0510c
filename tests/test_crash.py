"""Crash safety, measured: commands killed with SIGKILL at random (seeded) moments and re-run lose
at most what the README promises, and Ctrl-C (SIGINT) stops each command with one line, exit 130
and no traceback.

Every command runs as `python -m inpaint ...` in a subprocess, waited on with a time limit and
killed if it overstays. A kill is aimed at a random point of the work (a random step, image or
record count to wait for, then a random extra delay), so over the trials it lands in the middle
of steps, checkpoint writes, image writes and record appends alike.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import (
    ASTRONAUT,
    TINY,
    Running,
    logged_steps,
    needs_dlib,
    run_to_end,
    tiny_config,
    whole_json_lines,
    write_faces,
)


def visible_files(folder: Path) -> list[Path]:
    """Every file below `folder` except the hidden temporaries of interrupted atomic writes."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def assert_whole_pngs(paths, size: tuple[int, int] | None = None) -> None:
    for p in paths:
        with Image.open(p) as im:
            im.load()  # a truncated file fails here
            assert size is None or im.size == size, p


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_training_killed_at_random_points_resumes_from_its_last_whole_checkpoint(tmp_path):
    """Five SIGKILLs at random steps: every checkpoint left is whole and loads, the next run
    starts from the newest, at most `checkpoint_every` steps are lost each time, and the weights
    at the end are those of a run never killed."""
    from inpaint.checkpoints import list_checkpoints
    from inpaint.config import apply_overrides
    from inpaint.train import GANTrainer, prepare_run_dir, train

    every, epochs = 3, 15  # 16 images in batches of 4: 60 steps, a checkpoint every 3
    data = write_faces(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    args = ["train", "--dataset", data, "--out", run, "--config", TINY, "--epochs", epochs,
            "--set", f"train.checkpoint_every={every}", "--set", "train.keep_checkpoints=2", "-q"]
    cfg = apply_overrides(tiny_config(), [f"train.epochs={epochs}",
                                          f"train.checkpoint_every={every}",
                                          "train.keep_checkpoints=2"])
    checker = GANTrainer(cfg)
    rng = random.Random(8)
    lost, latest = [], 0
    def run_json_stamp():
        return (run / "run.json").stat().st_mtime_ns if (run / "run.json").is_file() else None

    for _ in range(5):
        target = latest + rng.randint(1, 3 * every)
        before = run_json_stamp()
        r = Running(*args)
        # run.json is rewritten once this run has resumed (and cut metrics.jsonl back to it)
        r.wait_until(lambda t=target, b=before: run_json_stamp() != b
                     and (logged_steps(run) or [0])[-1] >= t)
        time.sleep(rng.uniform(0.0, 0.1))  # anywhere in the next step or checkpoint write
        r.kill()
        record = json.loads((run / "run.json").read_text())
        assert record["resumed_from"] == latest  # the last run started at the newest checkpoint
        reached = logged_steps(run)[-1]
        ckpts = list_checkpoints(run / "checkpoints")
        for folder in (run / "checkpoints").glob("ckpt-*"):  # no half checkpoint under a name
            assert {p.name for p in folder.iterdir()} == {
                "generator.weights.h5", "discriminator.weights.h5", "state.npz", "state.json"}
        for ckpt in ckpts:
            checker.load_checkpoint(ckpt)
        latest = checker.step
        assert ckpts and int(ckpts[-1].name[5:]) == latest
        assert 0 <= reached - latest <= every, (reached, latest)
        lost.append(reached - latest)
    code, out, err = run_to_end(*args)
    assert code == 0, err
    total = epochs * 4
    assert f"trained {total - latest} steps" in out and f"step {total}/{total}" in out
    assert logged_steps(run) == list(range(1, total + 1))
    assert not list((run / "checkpoints").glob(".tmp-*"))  # the leftovers of kills are cleared
    print(f"steps lost per kill: {lost} (checkpoint every {every})")

    prepare_run_dir(tmp_path / "straight", cfg)
    train(data, tmp_path / "straight", cfg, progress=False)
    a, b = GANTrainer(cfg), GANTrainer(cfg)
    a.restore_latest(tmp_path / "straight" / "checkpoints")
    b.restore_latest(run / "checkpoints")
    assert a.step == b.step == total
    for va, vb in zip(a.generator.weights + a.discriminator.weights,
                      b.generator.weights + b.discriminator.weights):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), atol=1e-5)


def test_leftovers_of_a_killed_checkpoint_write_are_ignored_and_cleared(tmp_path, tiny_cfg):
    """What a kill can leave (a half-written or half-deleted folder) is never taken for a
    checkpoint and is cleared when the run starts again."""
    from inpaint.checkpoints import list_checkpoints
    from inpaint.train import GANTrainer

    trainer = GANTrainer(tiny_cfg)
    root = tmp_path / "checkpoints"
    half = root / ".tmp-ckpt-abc"
    half.mkdir(parents=True)
    (half / "state.json").write_text("{}")
    for step in (1, 2, 3):
        trainer.step = step
        trainer.save_checkpoint(root, keep=2, epoch=0)
    assert [p.name for p in list_checkpoints(root)] == ["ckpt-0000002", "ckpt-0000003"]
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == [".tmp-ckpt-abc"]
    GANTrainer.remove_stale_temporaries(root)
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-0000002", "ckpt-0000003"]


# ----------------------------------------------------------------------------- complete


@pytest.mark.slow
def test_complete_killed_and_rerun_finishes_without_redoing(tiny_run, tmp_path):
    rng = random.Random(3)
    src = write_faces(tmp_path / "in", n=10, size=(16, 16))
    out = tmp_path / "out"
    args = ["complete", src, "--outDir", out, "--model", tiny_run, "--iters", 150,
            "--batch-size", 2, "--out-interval", 10, "-q"]
    done_at_kill: list[list[str]] = []
    for _ in range(2):
        target = (len(done_at_kill[-1]) if done_at_kill else 0) + rng.randint(1, 3)
        r = Running(*args)
        r.wait_until(lambda t=target: len(list((out / "completed").glob("*.png"))) >= t
                     if (out / "completed").is_dir() else False)
        time.sleep(rng.uniform(0.0, 0.5))
        r.kill()
        # every output written is a whole image, whatever the kill interrupted
        assert_whole_pngs([p for p in visible_files(out) if p.suffix == ".png"])
        done_at_kill.append(sorted(p.name for p in (out / "completed").glob("*.png")))
    done = done_at_kill[-1]
    stamps = {n: (out / "completed" / n).stat().st_mtime_ns for n in done}
    code, stdout, err = run_to_end(*args)
    assert code == 0, err
    assert f"completed {10 - len(done)}, already done {len(done)}, failed 0" in stdout
    assert sorted(p.stem for p in (out / "completed").glob("*.png")) == [
        f"{i:03d}" for i in range(10)]
    for sub in ("blended", "generated", "masked"):
        assert len(list((out / sub).glob("*.png"))) == 10
    assert {n: (out / "completed" / n).stat().st_mtime_ns for n in done} == stamps  # not redone
    assert_whole_pngs(visible_files(out / "completed"), (16, 16))
    for line in (out / "log.jsonl").read_text().splitlines():
        if line.startswith("{") and line.endswith("}"):
            json.loads(line)  # lines appended after a cut one are whole


# ----------------------------------------------------------------------------- align


def photos(folder: Path, n: int) -> Path:
    """n photos with the astronaut's face, shrunk so that each aligns in a few milliseconds."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(ASTRONAUT) as im:
        small = im.convert("RGB").resize((256, 256), Image.Resampling.LANCZOS)
    for i in range(n):
        small.save(folder / f"p{i:02d}.jpg", quality=90)
    return folder


@needs_dlib
def test_align_killed_and_rerun_finishes_without_redoing(tmp_path):
    rng = random.Random(5)
    src = photos(tmp_path / "photos", 30)
    out = tmp_path / "aligned"
    args = ["align", src, "--out-dir", out, "-q"]
    for _ in range(2):
        target = len(whole_json_lines(out / "align.jsonl")) + rng.randint(1, 6)
        r = Running(*args)
        r.wait_until(lambda t=target: len(whole_json_lines(out / "align.jsonl")) >= t)
        time.sleep(rng.uniform(0.0, 0.05))
        r.kill()
        assert_whole_pngs([p for p in visible_files(out) if p.suffix == ".png"], (64, 64))
    recorded = {rec["key"] for rec in whole_json_lines(out / "align.jsonl")
                if rec["status"] == "aligned"}
    assert 0 < len(recorded) < 30
    stamps = {k: (out / f"{k}.png").stat().st_mtime_ns for k in recorded}
    code, stdout, err = run_to_end(*args)
    assert code == 0, err
    assert "aligned 30 of 30 inputs: 30 faces" in stdout
    assert f"({30 - len(recorded)} processed" in stdout
    assert f"; {len(recorded)} already done)" in stdout
    assert {k: (out / f"{k}.png").stat().st_mtime_ns for k in recorded} == stamps  # not redone
    faces = [p for p in visible_files(out) if p.suffix == ".png"]
    assert len(faces) == 30
    assert_whole_pngs(faces, (64, 64))


# ----------------------------------------------------------------------------- Ctrl-C


def gif_frames(folder: Path, n: int = 400) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            folder / f"{i:04d}.png")
    return folder


def interrupt_case(command: str, tmp_path: Path, tiny_run: Path | None):
    """(args, moment to press Ctrl-C, the message expected)."""
    if command == "train":
        data = write_faces(tmp_path / "faces", n=16)
        run = tmp_path / "run"
        return (["train", "--dataset", data, "--out", run, "--config", TINY, "--epochs", 200, "-q"],
                lambda r: len(logged_steps(run)) >= 3,
                "Error: interrupted at step ")
    if command == "complete":
        src = write_faces(tmp_path / "in", n=4, size=(16, 16))
        out = tmp_path / "out"
        return (["complete", src, "--outDir", out, "--model", tiny_run, "--iters", 5000, "-q"],
                lambda r: (out / "log.jsonl").is_file(),
                "Error: interrupted; the images completed so far are in ")
    if command == "align":
        src = photos(tmp_path / "photos", 300)  # seconds of work left after the 2nd record
        out = tmp_path / "aligned"
        return (["align", src, "--out-dir", out, "-q"],
                lambda r: len(whole_json_lines(out / "align.jsonl")) >= 2,
                "Error: interrupted; the records of the inputs done so far are in ")
    frames = gif_frames(tmp_path / "frames", 1500)  # seconds of writing, even on a busy CPU
    return (["make-gif", frames, "-o", tmp_path / "out.gif"],  # the bar says when it works
            lambda r: b"writing out.gif" in r.stderr,
            "Interrupted.")


@pytest.mark.parametrize("command", [
    pytest.param("train", marks=pytest.mark.slow),
    pytest.param("complete", marks=pytest.mark.slow),
    pytest.param("align", marks=needs_dlib),
    "make-gif",
])
def test_ctrl_c_stops_with_one_line_and_exit_130(command, tmp_path, request):
    tiny_run = request.getfixturevalue("tiny_run") if command == "complete" else None
    args, ready, message = interrupt_case(command, tmp_path, tiny_run)
    r = Running(*args)
    r.wait_until(lambda: ready(r))
    r.proc.send_signal(signal.SIGINT)
    code = r.finish()
    err = r.text(r.stderr)
    assert code == 130, err
    assert "Traceback" not in err and "Exception" not in err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith(message), err[-2000:]
    if command == "train":  # the step it stopped at was saved
        step = int(last.split("interrupted at step ")[1].split(";")[0])
        assert (tmp_path / "run" / "checkpoints" / f"ckpt-{step:07d}" / "state.json").is_file()
    if command == "make-gif":  # no half animation, no temporary left behind
        assert not (tmp_path / "out.gif").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.gif")]
