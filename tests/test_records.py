"""Run records: JSONL append with torn-line repair, stems, shards, and the run-directory lock: a
second command into a folder in use is refused naming the first (its PID), a lock left by a
killed process is taken over, and the shards of one `complete` run together. The two-process
tests start a real second process and wait for it to say it holds the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from inpaint.errors import DirInUse, UsageError
from inpaint.records import (
    LOCK_NAME,
    JsonlLog,
    append_jsonl,
    check_stem,
    ends_mid_line,
    in_shard,
    lock_folder,
    output_stems,
    parse_shard,
    read_jsonl,
    shard_tag,
)

from .conftest import LIMIT, ROOT, TINY, Running, logged_steps, run_cli, write_faces


def test_append_after_a_torn_line_starts_a_new_line(tmp_path):
    path = tmp_path / "sub" / "log.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"a": 2, "b"')  # a run killed mid-write
    assert ends_mid_line(path)
    append_jsonl(path, {"a": 3}, fsync=True)
    assert path.read_text().splitlines()[-1] == json.dumps({"a": 3})
    assert read_jsonl(path) == [{"a": 1}, {"a": 3}]


def test_jsonl_log_writes_compact_lines_and_reads_back(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlLog(path, compact=True, flush=True) as log:
        log.write({"x": [1, 2]})
        assert path.read_text() == '{"x":[1,2]}\n'  # flushed at once
    assert read_jsonl(tmp_path / "missing.jsonl") == []
    path.write_text(path.read_text() + "[1, 2]\nnot json\n")
    assert read_jsonl(path) == [{"x": [1, 2]}]  # only whole JSON objects


def test_shards_split_the_inputs_exactly():
    stems = output_stems(["b.png", "a.png", "c.jpg", "a.jpg"])
    assert stems == ["b", "a", "c", "a-2"]
    shards = [in_shard(stems, (i, 3)) for i in (1, 2, 3)]
    assert [sum(col) for col in zip(*shards)] == [1, 1, 1, 1]
    assert parse_shard("2/3") == (2, 3) and shard_tag((2, 3)) == ".shard-2-of-3"
    assert shard_tag(None) == ""
    with pytest.raises(UsageError, match="1 <= I <= N") as bad:
        parse_shard("4/3")
    assert bad.value.exit_code == 2  # bad usage, as click's own usage errors


@pytest.mark.parametrize("stem", ["..", ".", "", "a/b", "..\\x", "a\0b"])
def test_a_stem_that_is_a_path_is_a_usage_error(stem):
    assert check_stem("000") == "000" and check_stem("a.b-2") == "a.b-2"
    with pytest.raises(UsageError, match="not a path"):
        check_stem(stem)


# ----------------------------------------------------------------------------- the lock

HOLDER = """
import sys
from inpaint.records import lock_folder
with lock_folder(sys.argv[1], "complete"):
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)
"""



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
        with pytest.raises(DirInUse, match="in use by other inpaint processes") as err:
            with lock_folder(out, "complete"):
                pass
        assert str(err.value).count(f"PID {os.getpid()}") == 2  # each running shard named
    with lock_folder(out, "complete"):  # all shards done: free again
        pass
    assert sorted(p.name for p in out.iterdir()) == []


def test_complete_into_a_folder_in_use_is_refused_and_writes_nothing(tiny_run, tmp_path):
    out = tmp_path / "out"
    holder = Holder(out)
    try:
        r = run_cli("complete", write_faces(tmp_path / "in", n=1, size=(16, 16)), "--outDir", out,
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
        r = run_cli("train", "--dataset", data, "--out", run_dir, "--config", TINY, "-q")
        assert r.exit_code == 1, r.output
        assert f"is in use by `inpaint train` (PID {first.proc.pid} " in r.output
        assert first.proc.poll() is None  # the first one trains on
        first.proc.send_signal(signal.SIGINT)
        assert first.finish() == 130
    finally:
        if first.proc.poll() is None:
            first.kill()
    from inpaint.checkpoints import list_checkpoints
    from inpaint.train import GANTrainer

    from .conftest import tiny_config

    trainer = GANTrainer(tiny_config())
    assert trainer.restore_latest(run_dir / "checkpoints") == list_checkpoints(
        run_dir / "checkpoints")[-1]
    assert not (run_dir / LOCK_NAME).exists()


def test_recorded_paths_reads_a_list_or_one_string_and_refuses_the_rest(tmp_path):
    from pathlib import Path

    from inpaint.records import recorded_paths

    rec = tmp_path / "run.json"
    for value, expected in ((["a", "b/c"], [Path("a"), Path("b/c")]), ("a", [Path("a")]),
                            ([], None), ([1], None), (None, None)):
        rec.write_text(json.dumps({"dataset": value}))
        assert recorded_paths(rec, "dataset") == expected
    assert recorded_paths(rec, "other") is None
    assert recorded_paths(tmp_path / "missing.json", "dataset") is None
    rec.write_text("{torn")
    assert recorded_paths(rec, "dataset") is None
