"""One command per output or run folder: a second one is refused naming the first (its PID), a
lock left by a killed process is taken over, and the shards of one `complete` run together.
The two-process tests start a real second process and wait for it to say it holds the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from inpaint.cli import cli
from inpaint.errors import DirInUse
from inpaint.locks import LOCK_NAME, lock_folder

from .conftest import ROOT, write_faces
from .test_crash import TINY, Running, logged_steps

LIMIT = 180

HOLDER = """
import sys
from inpaint.locks import lock_folder
with lock_folder(sys.argv[1], "complete"):
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)
"""


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class Holder:
    """Another process holding the lock of `folder`, until released or killed."""

    def __init__(self, folder):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdout.readline() == b"locked\n"  # blocks until it holds the lock

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(LIMIT)

    def release(self):
        self.proc.stdin.close()
        assert self.proc.wait(LIMIT) == 0


def test_a_folder_locked_by_another_process_is_refused_naming_it(tmp_path):
    holder = Holder(tmp_path / "out")
    try:
        with pytest.raises(DirInUse, match=f"in use by `inpaint complete` \\(PID "
                                           f"{holder.proc.pid} "):
            with lock_folder(tmp_path / "out", "train"):
                pass
    finally:
        holder.release()
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # released and removed
    with lock_folder(tmp_path / "out", "train"):
        assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    holder = Holder(tmp_path / "out")
    holder.kill()  # SIGKILL: its lock file stays, naming it
    assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == holder.proc.pid
    with caplog.at_level("INFO"), lock_folder(tmp_path / "out", "complete"):
        owner = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
    assert owner["pid"] == os.getpid()
    assert f"took over the stale lock of PID {holder.proc.pid}" in caplog.text


def test_shards_share_a_folder_but_not_a_shard(tmp_path):
    out = tmp_path / "out"
    with lock_folder(out, "complete", shard=(1, 2)), lock_folder(out, "complete", shard=(2, 2)):
        with pytest.raises(DirInUse, match="shard 1/2 .* already running"):
            with lock_folder(out, "complete", shard=(1, 2)):
                pass
        with pytest.raises(DirInUse, match="in use by other inpaint processes"):
            with lock_folder(out, "complete"):
                pass
    with lock_folder(out, "complete"):  # all shards done: free again
        pass
    assert sorted(p.name for p in out.iterdir()) == []


def test_complete_into_a_folder_in_use_is_refused_and_writes_nothing(tiny_run, tmp_path):
    out = tmp_path / "out"
    holder = Holder(out)
    try:
        r = run("complete", write_faces(tmp_path / "in", n=1, size=(16, 16)), "--outDir", out,
                "--model", tiny_run, "--iters", 1, "-q")
    finally:
        holder.release()
    assert r.exit_code == 1, r.output
    assert f"Error: {out} is in use by `inpaint complete` (PID {holder.proc.pid} " in r.output
    assert sorted(p.name for p in out.iterdir()) == []


@pytest.mark.slow
def test_a_second_training_into_a_running_one_is_refused_and_harms_nothing(tmp_path):
    data = write_faces(tmp_path / "faces", n=16)
    run_dir = tmp_path / "run"
    first = Running("train", "--dataset", data, "--out", run_dir, "--config", TINY,
                    "--epochs", 400, "-q")
    try:
        first.wait_until(lambda: len(logged_steps(run_dir)) >= 6)  # past its first checkpoint
        r = run("train", "--dataset", data, "--out", run_dir, "--config", TINY, "-q")
        assert r.exit_code == 1, r.output
        assert f"is in use by `inpaint train` (PID {first.proc.pid} " in r.output
        assert first.proc.poll() is None  # the first one trains on
        first.proc.send_signal(signal.SIGINT)
        assert first.finish() == 130
    finally:
        if first.proc.poll() is None:
            first.kill()
    from inpaint.train import GANTrainer, list_checkpoints

    from .conftest import tiny_config

    trainer = GANTrainer(tiny_config())
    assert trainer.restore_latest(run_dir / "checkpoints") == list_checkpoints(
        run_dir / "checkpoints")[-1]
    assert not (run_dir / LOCK_NAME).exists()
