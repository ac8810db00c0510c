"""What the operating system refuses: a full disk, a read-only one, an output path that is a file,
a file name at the 255-byte limit. Every command ends with one `Error: ...` line and exit 1 (no
traceback, no crash), the outputs finished before are kept whole, and no temporary is left.

The full and read-only disks are small tmpfs mounts, which need root (the tests are skipped
where mounting is not allowed); the commands run in subprocesses, so a crash would show as a
signal, not take the test run down."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint.images import write_image

from .conftest import TINY, run_cli, run_to_end, write_faces


def one_error_line(output: str) -> str:
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture
def mount(tmp_path):
    """mount(size, read_only=False) -> a fresh tmpfs folder, unmounted after the test."""
    mounted = []

    def make(size: str, read_only: bool = False) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                           capture_output=True)
        if r.returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def whole_pngs(folder: Path) -> list[str]:
    names = []
    for p in sorted(folder.glob("*.png")):
        with Image.open(p) as im:
            im.load()  # a truncated file fails here
        names.append(p.name)
    return names


# ----------------------------------------------------------------------------- long names


@pytest.mark.parametrize("name", ["a" * 251 + ".png", "\u00e9" * 125 + ".png"])
def test_a_file_name_of_255_bytes_is_written_atomically(name, tmp_path):
    assert len(name.encode()) in (255, 254)
    write_image(tmp_path / name, np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left


def test_complete_handles_inputs_with_names_of_255_bytes(tiny_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    stem = "f" * 251
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(src / f"{stem}.png")
    out = tmp_path / "out"
    r = run_cli("complete", src, "--outDir", out, "--model", tiny_run, "--iters", 2, "-q")
    assert r.exit_code == 0, r.output
    assert whole_pngs(out / "completed") == [f"{stem}.png"]


# ----------------------------------------------------------------------------- paths that are files


def test_complete_into_a_folder_whose_subfolder_is_a_file(tiny_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "completed").write_text("not a folder")
    r = run_cli("complete", write_faces(tmp_path / "in", n=1, size=(16, 16)), "--outDir", out,
            "--model", tiny_run, "--iters", 1, "-q")
    assert r.exit_code == 1, r.output
    assert "completed" in one_error_line(r.output)


def test_train_into_a_path_that_is_a_file(tmp_path):
    (tmp_path / "run").write_text("a file")
    r = run_cli("train", "--dataset", write_faces(tmp_path / "faces"), "--out", tmp_path / "run",
            "--config", TINY, "-q")
    assert r.exit_code == 1, r.output
    assert one_error_line(r.output).startswith(f"Error: {tmp_path / 'run'}: ")
    assert (tmp_path / "run").read_text() == "a file"


def test_make_gif_into_a_folder_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    r = run_cli("make-gif", write_faces(tmp_path / "frames", n=2, size=(8, 8)), "-o",
            tmp_path / "file" / "a.gif", "-q")
    assert r.exit_code == 1, r.output
    assert one_error_line(r.output).startswith(f"Error: {tmp_path / 'file'}")


def test_evaluate_checks_its_json_path_before_the_work(tmp_path):
    (tmp_path / "file").write_text("x")
    # The model does not exist: an error about it would mean the work had started first.
    r = run_cli("evaluate", write_faces(tmp_path / "in", n=1, size=(16, 16)), "--model",
            tmp_path / "no-model", "--json", tmp_path / "file" / "r.json", "-q")
    assert r.exit_code == 1, r.output
    assert one_error_line(r.output).startswith(f"Error: {tmp_path / 'file'}")


def test_evaluate_says_which_images_it_could_not_read(tiny_run, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    r = run_cli("evaluate", tmp_path / "in", "--model", tiny_run, "-q")
    assert r.exit_code == 2, r.output
    assert f"{tmp_path / 'in' / 'bad.png'}: not an image Pillow can read" in r.output


# ----------------------------------------------------------------------------- full and read-only disks


def test_complete_on_a_full_disk_stops_with_one_error_and_keeps_whole_images(tiny_run,
                                                                             tmp_path, mount):
    disk = mount("2m")
    src = write_faces(tmp_path / "in", n=12, size=(16, 16))
    out = disk / "out"
    code, stdout, stderr = run_to_end("complete", src, "--outDir", out, "--model", tiny_run,
                                      "--iters", 60, "--out-interval", 1, "--batch-size", 4,
                                      "-q")
    assert code == 1, stderr
    assert "No space left on device" in one_error_line(stderr)
    if (out / "completed").is_dir():
        whole_pngs(out / "completed")  # every completed image written is whole


def test_train_on_a_full_disk_stops_with_one_error_and_no_crash(tmp_path, mount):
    disk = mount("200k")
    run_dir = disk / "run"
    code, stdout, stderr = run_to_end("train", "--dataset", write_faces(tmp_path / "faces", n=16),
                                      "--out", run_dir, "--config", TINY, "--epochs", 500, "-q")
    assert code == 1, stderr  # not a signal (a negative code)
    assert "No space left on device" in one_error_line(stderr)
    from inpaint.checkpoints import list_checkpoints
    from inpaint.train import GANTrainer

    from .conftest import tiny_config

    for ckpt in list_checkpoints(run_dir / "checkpoints"):  # what was written loads
        GANTrainer(tiny_config()).load_checkpoint(ckpt)
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_complete_on_a_read_only_disk_says_so(tiny_run, tmp_path, mount):
    disk = mount("1m", read_only=True)
    code, stdout, stderr = run_to_end("complete", write_faces(tmp_path / "in", n=1, size=(16, 16)),
                                      "--outDir", disk / "out", "--model", tiny_run, "-q")
    assert code == 1, stderr
    assert "Read-only file system" in one_error_line(stderr)


# ----------------------------------------------------------------------------- killed exports


def test_an_export_clears_what_a_killed_export_left(tiny_run, tmp_path):
    from inpaint.models import export_model, load_model

    loaded = load_model(tiny_run)
    out = tmp_path / "model"
    for left in (".model.k3x_9q0a", ".model.old"):  # a temporary, and the model it replaced
        (tmp_path / left).mkdir()
        (tmp_path / left / "generator.keras").write_bytes(b"half")
    (tmp_path / ".model.notes").mkdir()  # not an export's name: kept
    export_model(out, loaded.generator, loaded.discriminator, loaded.config)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.notes", "model"]
    load_model(out)
