"""Inputs that are there but are no regular file: FIFOs (`mkfifo f.png`), dangling symbolic links
and link loops. Only regular files are read; every other entry is reported by name with its
reason and skipped, by every command, and nothing waits on a FIFO."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint.errors import ConfigError, ImageReadError, MaskError

from .conftest import needs_dlib, run_cli, write_faces

LIMIT = 120  # seconds: far more than any command here needs; a FIFO read would wait forever



def without_hanging(fn, fifos):
    """fn() in a thread; fail if it is still running after LIMIT seconds (blocked on a FIFO,
    which is then opened for writing so that the thread can end)."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIMIT)
    if thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(LIMIT)
        pytest.fail(f"still waiting after {LIMIT} s: it opened a FIFO for reading")
    if "error" in box:
        raise box["error"]
    return box["result"]


def specials(folder: Path) -> dict[str, str]:
    """A FIFO, a dangling link and a link loop with image names in `folder`: name -> reason."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.png")
    os.symlink(folder / "missing.png", folder / "dangling.png")
    os.symlink(folder / "loop_b.png", folder / "loop_a.png")
    os.symlink(folder / "loop_a.png", folder / "loop_b.png")
    return {"fifo.png": "not a regular file (a FIFO)", "dangling.png": "a dangling symbolic link",
            "loop_a.png": "a symbolic link loop", "loop_b.png": "a symbolic link loop"}


def test_reading_a_special_file_names_its_reason_without_waiting(tmp_path):
    from inpaint.images import read_image
    from inpaint.masks import read_mask

    reasons = specials(tmp_path)
    fifos = [tmp_path / "fifo.png"]
    for name, reason in reasons.items():
        with pytest.raises(ImageReadError, match=re.escape(f"{name}: {reason}")):
            without_hanging(lambda name=name: read_image(tmp_path / name), fifos)
    with pytest.raises(MaskError, match="not a regular file"):
        without_hanging(lambda: read_mask(tmp_path / "fifo.png", 16), fifos)


def test_a_fifo_as_config_is_refused(tmp_path):
    from inpaint.config import load_config

    os.mkfifo(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="not a regular file"):
        without_hanging(lambda: load_config(tmp_path / "c.toml"), [tmp_path / "c.toml"])


def test_complete_reports_special_files_and_completes_the_rest(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    reasons = specials(src)
    out = tmp_path / "out"
    r = without_hanging(lambda: run_cli("complete", src, "--outDir", out, "--model", tiny_run,
                                    "--iters", 2, "-q"), [src / "fifo.png"])
    assert r.exit_code == 1, r.output
    assert "completed 2, already done 0, failed 4" in r.output
    for name, reason in reasons.items():
        assert f"failed: {src / name}: {reason}" in r.output
    assert sorted(p.name for p in (out / "completed").iterdir()) == ["000.png", "001.png"]


def test_complete_refuses_a_fifo_as_mask(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=1, size=(16, 16))
    os.mkfifo(tmp_path / "mask.png")
    r = without_hanging(lambda: run_cli("complete", src, "--outDir", tmp_path / "out", "--model",
                                    tiny_run, "--mask", tmp_path / "mask.png", "-q"),
                        [tmp_path / "mask.png"])
    assert r.exit_code == 2, r.output
    assert "not a regular file" in r.output


def test_evaluate_names_the_special_files_it_skips(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    reasons = specials(src)
    r = without_hanging(lambda: run_cli("evaluate", src, "--model", tiny_run, "--iters", 1,
                                    "--mask-type", "center", "-q"), [src / "fifo.png"])
    assert r.exit_code == 0, r.output
    for name, reason in reasons.items():
        assert f"skipped: {src / name}: {reason}" in r.output


def test_make_gif_names_a_fifo_among_the_frames(tmp_path):
    frames = write_faces(tmp_path / "frames", n=2, size=(8, 8))
    os.mkfifo(frames / "0005.png")
    r = without_hanging(lambda: run_cli("make-gif", frames, "-o", tmp_path / "a.gif", "-q"),
                        [frames / "0005.png"])
    assert r.exit_code == 1, r.output
    assert f"Error: {frames / '0005.png'}: not a regular file (a FIFO)" in r.output
    assert not (tmp_path / "a.gif").exists()


@needs_dlib
def test_align_reports_each_special_file_and_goes_on(tmp_path):
    src = write_faces(tmp_path / "photos", n=2, size=(32, 32))
    reasons = specials(src)
    os.symlink(src / "loop_a.png", tmp_path / "named_loop.png")
    out = tmp_path / "aligned"
    r = without_hanging(lambda: run_cli("align", src, tmp_path / "named_loop.png", "--out-dir", out,
                                    "-q"), [src / "fifo.png"])
    assert r.exit_code == 0, r.output
    assert "errors: 5" in r.output
    for name, reason in reasons.items():
        assert f"error: {src / name}: {reason}" in r.output
    assert f"error: {tmp_path / 'named_loop.png'}: a symbolic link loop" in r.output
    assert "no face: 2" in r.output


def test_the_training_scan_counts_special_files_as_skipped(tmp_path):
    from inpaint.config import DataConfig
    from inpaint.data import load_face_dataset

    src = write_faces(tmp_path / "faces", n=3, size=(16, 16))
    reasons = specials(src)
    data = without_hanging(lambda: load_face_dataset(src, 16, DataConfig()), [src / "fifo.png"])
    assert len(data) == 3
    assert data.n_files == 7
    assert sorted(data.skipped) == sorted((str(src / n), f"{src / n}: {r}")
                                          for n, r in reasons.items())


def test_an_animated_gif_says_only_its_first_frame_is_used(tmp_path, caplog):
    from inpaint.images import read_image

    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with caplog.at_level(logging.WARNING):
        img = read_image(tmp_path / "a.gif")
    assert img.shape == (8, 8, 3) and img[0, 0, 0] < 100  # the first frame
    assert "is animated (2 frames); only its first frame is used" in caplog.text
