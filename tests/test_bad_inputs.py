"""The bad-input corpus (tests/data/bad/, written by tests/data/make_bad_corpus.py) through every
command that reads it: train, complete, align, evaluate and make-gif each give the documented
behaviour (skip and report, `Error: ...` with exit 1, or a usage error with exit 2), never a
traceback, and never lose or overwrite other outputs.

A file name that is not valid UTF-8 is made here, in tmp_path (git and many tools mangle such
names). The commands run in-process through click's CliRunner, whose stdout is strict UTF-8
(printing an undecodable name raises there as it would on such a terminal).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint.errors import ImageReadError
from inpaint.images import read_image

from .conftest import ROOT, dlib_missing, needs_dlib, run_cli, snapshot, write_faces
from .data.make_bad_corpus import (
    CORPUS,
    MASK_WRONG_SIZE,
    NO_IMAGES_DIR,
    WRONG_TYPE_CONFIG,
    corpus_bytes,
)

BAD = ROOT / "tests" / "data" / "bad"
UNREADABLE = sorted(name for name, (_, ok) in CORPUS.items() if not ok)
READABLE = sorted(name for name, (_, ok) in CORPUS.items() if ok) + [MASK_WRONG_SIZE]
NON_UTF8 = b"caf\xe9_face.png"  # Latin-1 bytes: not a UTF-8 name
NON_UTF8_STEM = os.fsdecode(NON_UTF8)[:-4]  # what Python calls it: "caf\udce9_face"
GOOD = [f"{i:03d}" for i in range(4)]



def assert_no_traceback(r):
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


def inside(folder: Path) -> bool:
    """Whether every file below the resolved `folder` stays there (no link or name escapes)."""
    root = folder.resolve()
    return all(p.resolve().is_relative_to(root) for p in folder.rglob("*"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    """The committed corpus, four good 16x16 faces and a face whose name is not UTF-8."""
    folder = tmp_path / "in"
    shutil.copytree(BAD, folder)
    write_faces(folder, n=4, size=(16, 16))
    with open(os.path.join(os.fsencode(folder), NON_UTF8), "wb") as f:
        f.write((folder / "000.png").read_bytes())
    return folder


@pytest.fixture(scope="module")
def model(tiny_run):
    return tiny_run


def test_committed_corpus_is_the_generated_one():
    made = corpus_bytes()
    committed = {str(p.relative_to(BAD)) for p in BAD.rglob("*") if p.is_file()} - {"README.md"}
    assert committed == set(made)
    for name in made:  # what the script writes without Pillow is committed byte for byte
        if not name.endswith((".jpg", ".png")) or name in ("zero_bytes.png", "text_named.png",
                                                           "huge_header.png"):
            assert (BAD / name).read_bytes() == made[name], name


def test_each_file_is_read_converted_or_refused_with_a_reason():
    for name in UNREADABLE:
        with pytest.raises(ImageReadError, match=name):
            read_image(BAD / name)
    with pytest.raises(ImageReadError, match="too large"):
        read_image(BAD / "huge_header.png")
    with pytest.raises(ImageReadError, match="only 1x1 pixels"):
        read_image(BAD / "one_pixel.png")
    for name in READABLE:
        img = read_image(BAD / name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
    assert read_image(BAD / "deep_16bit.png")[[0, -1], [0, -1], 0].tolist() == [0, 255]
    rotated = read_image(BAD / "exif_rotated.jpg")
    assert rotated.shape == (32, 16, 3)  # shown upright: 16 wide, 32 high
    assert rotated[:14, :, 0].min() > 200 and rotated[18:].max() < 60  # the red half on top
    palette = read_image(BAD / "palette_transparent.png")
    with Image.open(BAD / "palette_transparent.png") as im:
        transparent = np.asarray(im) == 0
    assert transparent.any() and (palette[transparent] == 255).all()  # over white


# ----------------------------------------------------------------------------- per command


def test_train_skips_and_records_the_unreadable_files(corpus, tmp_path):
    r = run_cli("train", "--dataset", corpus, "--out", tmp_path / "run", "--config",
            ROOT / "configs" / "tiny.toml", "--epochs", 1, "-q")
    assert r.exit_code == 0, r.output
    assert_no_traceback(r)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert sorted(Path(s["path"]).name for s in record["skipped_files"]) == UNREADABLE
    assert record["images"] == len(READABLE) + len(GOOD) + 1  # the non-UTF-8 name is read too
    assert f"{len(UNREADABLE)} unreadable files skipped" in r.output


def test_complete_finishes_the_readable_reports_the_rest_and_keeps_other_outputs(
        corpus, model, tmp_path):
    out = tmp_path / "out"
    (out / "completed").mkdir(parents=True)
    Image.new("RGB", (16, 16), (1, 2, 3)).save(out / "completed" / "earlier.png")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    r = run_cli("complete", corpus, "--outDir", out, "--model", model, "--iters", 2, "-q")
    assert r.exit_code == 1, r.output
    assert_no_traceback(r)
    n_ok = len(READABLE) + len(GOOD) + 1
    assert f"completed {n_ok}, already done 0, failed {len(UNREADABLE)}" in r.output
    for name in UNREADABLE:
        assert f"failed: {corpus / name}" in r.output
    stems = {p[:-4] for p in os.listdir(out / "completed")}
    assert stems == {Path(n).stem for n in READABLE} | set(GOOD) | {NON_UTF8_STEM, "earlier"}
    assert NON_UTF8 in os.listdir(os.fsencode(out / "completed"))  # the name kept, as bytes
    after = snapshot(out)
    assert {k: after[k] for k in before} == before  # nothing of the earlier outputs touched
    assert inside(out)
    # a second run redoes nothing and still reports the bad files
    r = run_cli("complete", corpus, "--outDir", out, "--model", model, "--iters", 2, "-q")
    assert r.exit_code == 1 and f"completed 0, already done {n_ok}" in r.output


@needs_dlib
def test_align_records_the_bad_files_and_goes_on(corpus, tmp_path):
    out = tmp_path / "aligned"
    r = run_cli("align", corpus, "--out-dir", out, "-q")
    assert r.exit_code == 0, r.output
    assert_no_traceback(r)
    n = len(UNREADABLE) + len(READABLE) + len(GOOD) + 1
    assert f"aligned 0 of {n} inputs" in r.output
    assert f"errors: {len(UNREADABLE)}" in r.output
    records = [json.loads(s) for s in (out / "align.jsonl").read_text().splitlines()]
    errors = sorted(Path(rec["input"]).name for rec in records if rec["status"] == "error")
    assert errors == UNREADABLE
    assert NON_UTF8_STEM in {rec["key"] for rec in records}
    r = run_cli("align", corpus, "--out-dir", out, "--strict", "-q")  # re-run: only errors redone
    assert r.exit_code == 1 and f"{n - len(UNREADABLE)} already done" in r.output
    assert "Error: --strict" in r.output
    assert_no_traceback(r)


def test_evaluate_skips_and_names_the_unreadable(corpus, model):
    r = run_cli("evaluate", corpus, "--model", model, "--iters", 1, "--mask-type", "center", "-q")
    assert r.exit_code == 0, r.output
    assert_no_traceback(r)
    skipped = [line for line in r.output.splitlines() if line.startswith("skipped: ")]
    assert sorted(Path(line[9:].split(":")[0]).name for line in skipped) == UNREADABLE


@pytest.mark.parametrize("name", UNREADABLE + ["cmyk.jpg"])
def test_make_gif_names_a_bad_frame_and_keeps_the_old_animation(name, tmp_path):
    frames = tmp_path / "frames"
    write_faces(frames, n=3, size=(16, 16))
    shutil.copy(BAD / name, frames / f"0002_{name}")  # sorts between the good frames
    old = tmp_path / "old.gif"
    old.write_bytes(b"GIF89a an earlier animation")
    r = run_cli("make-gif", frames, "-o", old, "-q")
    assert r.exit_code == 1, r.output
    assert_no_traceback(r)
    assert r.output.startswith(f"Error: {frames / ('0002_' + name)}")  # 24x24 cmyk: wrong size
    assert old.read_bytes() == b"GIF89a an earlier animation"


def test_make_gif_with_a_non_utf8_frame_name(tmp_path):
    frames = write_faces(tmp_path / "frames", n=2, size=(16, 16))
    with open(os.path.join(os.fsencode(frames), b"0009_" + NON_UTF8), "wb") as f:
        f.write((frames / "000.png").read_bytes())
    r = run_cli("make-gif", frames, "-o", tmp_path / "a.gif", "-q")
    assert r.exit_code == 0, r.output
    assert "3 frames" in r.output


def test_a_folder_with_no_images(model, tmp_path):
    empty = BAD / NO_IMAGES_DIR
    cases = {
        ("train", "--dataset", empty, "--out", tmp_path / "r"): (1, "Error: no images"),
        ("complete", empty, "--outDir", tmp_path / "o", "--model", model): (2, "no images match"),
        ("evaluate", empty, "--model", model): (2, "no readable images"),
        ("make-gif", empty, "-o", tmp_path / "a.gif"): (1, "Error: "),
    }
    if dlib_missing() is None:
        cases[("align", empty, "--out-dir", tmp_path / "a")] = (1, "Error: no images found")
    for args, (code, message) in cases.items():
        r = run_cli(*args)
        assert r.exit_code == code and message in r.output, (args, r.output)
        assert_no_traceback(r)
    assert not (tmp_path / "o").exists() and not (tmp_path / "a.gif").exists()


def test_a_mask_of_the_wrong_size(model, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    r = run_cli("complete", src, "--outDir", tmp_path / "o1", "--model", model, "--mask",
            BAD / MASK_WRONG_SIZE, "-q")
    assert r.exit_code == 1 and "mask_7x7.png is 7x7; it must be 16x16" in r.output
    assert_no_traceback(r)
    assert not (tmp_path / "o1" / "completed").exists()  # checked before any work
    masks = tmp_path / "masks"  # one per image: only the image with the bad mask fails
    masks.mkdir()
    shutil.copy(BAD / MASK_WRONG_SIZE, masks / "000.png")
    Image.new("L", (16, 16), 255).save(masks / "001.png")
    r = run_cli("complete", src, "--outDir", tmp_path / "o2", "--model", model, "--mask", masks,
            "--iters", 1, "-q")
    assert r.exit_code == 1 and "completed 1, already done 0, failed 1" in r.output
    assert sorted(os.listdir(tmp_path / "o2" / "completed")) == ["001.png"]


def tampered_models(run_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Copies of the exported model, each damaged in one way."""
    def copy(name):
        dst = tmp_path / name
        shutil.copytree(run_dir / "model", dst)
        return dst

    def resum(model_dir):  # model.json made to agree with the edited config
        meta = json.loads((model_dir / "model.json").read_text())
        meta["sha256"]["config.toml"] = hashlib.sha256(
            (model_dir / "config.toml").read_bytes()).hexdigest()
        (model_dir / "model.json").write_text(json.dumps(meta))

    out = {}
    m = out["missing config"] = copy("missing")
    (m / "config.toml").unlink()
    m = out["edited config"] = copy("edited")
    (m / "config.toml").write_text((m / "config.toml").read_text().replace("z_dim = 8",
                                                                         "z_dim = 9"))
    m = out["edited config and checksum"] = copy("resummed")
    (m / "config.toml").write_text((m / "config.toml").read_text().replace("z_dim = 8",
                                                                         "z_dim = 9"))
    resum(m)
    m = out["config of the wrong type"] = copy("wrongtype")
    (m / "config.toml").write_text((m / "config.toml").read_text().replace("z_dim = 8",
                                                                         'z_dim = "eight"'))
    resum(m)
    for key, value in (("sha256", ["not", "a", "table"]), ("sha256", None),
                       ("format_version", "1")):
        m = out[f"model.json {key}={value}"] = copy(f"meta-{key}-{type(value).__name__}")
        meta = json.loads((m / "model.json").read_text())
        if value is None:
            del meta[key]  # checksums removed: must not switch verification off
        else:
            meta[key] = value
        (m / "model.json").write_text(json.dumps(meta))
    return out


def test_a_model_directory_with_a_missing_or_tampered_config(model, tmp_path):
    src = write_faces(tmp_path / "in", n=1, size=(16, 16))
    expected = {
        "missing config": "config.toml is missing",
        "edited config": "config.toml does not match the checksum",
        "edited config and checksum": "the generator maps",
        "config of the wrong type": "model.z_dim expects an integer",
        "model.json sha256=['not', 'a', 'table']": "model.json is damaged",
        "model.json sha256=None": "model.json is damaged",
        "model.json format_version=1": "model.json is damaged",
    }
    for what, model_dir in tampered_models(model, tmp_path).items():
        for args in (("complete", src, "--outDir", tmp_path / "out", "--model", model_dir),
                     ("evaluate", src, "--model", model_dir)):
            r = run_cli(*args, "--iters", 1, "-q")
            assert r.exit_code == 1 and r.output.startswith("Error: "), (what, r.output)
            assert expected[what] in r.output, (what, r.output)
            assert_no_traceback(r)
    assert not (tmp_path / "out").exists()


def test_a_config_with_a_wrong_type(tmp_path):
    faces = write_faces(tmp_path / "faces", n=4)
    r = run_cli("train", "--dataset", faces, "--out", tmp_path / "r1", "--config",
            BAD / WRONG_TYPE_CONFIG)
    assert r.exit_code == 1 and "train.epochs expects an integer, got 'three'" in r.output
    assert_no_traceback(r)
    assert not (tmp_path / "r1").exists()
    r = run_cli("train", "--dataset", faces, "--out", tmp_path / "r2", "--set", "train.epochs=three")
    assert r.exit_code == 2 and "train.epochs expects an integer" in r.output
    assert_no_traceback(r)
    run_dir = tmp_path / "r3"  # a run whose stored config was edited: resuming says so
    run_dir.mkdir()
    shutil.copy(BAD / WRONG_TYPE_CONFIG, run_dir / "config.toml")
    r = run_cli("train", "--out", run_dir, "--dataset", faces)
    assert r.exit_code == 1 and "train.epochs expects an integer" in r.output
    assert_no_traceback(r)
    assert sorted(os.listdir(run_dir)) == ["config.toml"]  # the run is left as it was
    r = run_cli("train", "--dataset", faces, "--out", tmp_path / "r4", "--config", BAD / "cmyk.jpg")
    assert r.exit_code == 1 and "is not UTF-8 text" in r.output
    assert_no_traceback(r)


# ----------------------------------------------------------------------------- output names


HOSTILE = ["..png", "...png", ".hidden.png", "a\\..\\b.png", "-rf.png", "x.png", "x.jpg",
           "x-2.png", "X.png", "a[1].png", "spaced name .png"]


def test_output_names_stay_inside_and_never_collide(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    face = np.asarray(Image.open(write_faces(tmp_path / "f", n=1, size=(16, 16)) / "000.png"))
    for name in HOSTILE:
        Image.fromarray(face).save(src / name, format="PNG")
    out = tmp_path / "deep" / "out"
    r = run_cli("complete", src, "--outDir", out, "--model", model, "--iters", 1, "-q")
    assert r.exit_code == 0, r.output
    written = os.listdir(out / "completed")
    assert len(written) == len(HOSTILE) == len({w.casefold() for w in written})  # one each
    assert not any(w.startswith(".") or "/" in w for w in written)
    assert inside(out) and sorted(os.listdir(tmp_path / "deep")) == ["out"]


def test_align_output_keys_stay_inside_the_output_dir(tmp_path):
    from inpaint import align

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("..jpg", "sub/x.jpg", "a\\..\\b.jpg"):
        (photos / name).write_bytes(b"x")
    out = tmp_path / "out"
    patterns = [photos, str(photos / "sub" / ".." / ".." / "photos" / "*.jpg"),
                str(photos / "sub" / "*" / ".." / ".." / ".." / "*" / "*.jpg")]
    for job in align.plan_jobs(patterns, out):
        target = (out / f"{job.key}.png").resolve()
        assert target.is_relative_to(out.resolve()), job
        assert not job.key.startswith("."), job


def test_per_image_masks_are_found_for_names_with_pattern_characters(model, tmp_path):
    src, masks = tmp_path / "in", tmp_path / "masks"
    write_faces(src, n=1, size=(16, 16))
    masks.mkdir()
    (src / "000.png").rename(src / "a[1].png")
    Image.new("L", (16, 16), 255).save(masks / "a[1].png")
    Image.new("L", (16, 16), 0).save(masks / "a1.png")  # what the name matches as a pattern
    r = run_cli("complete", src, "--outDir", tmp_path / "out", "--model", model, "--mask", masks,
            "--iters", 1, "-q")
    assert r.exit_code == 0, r.output
    known = np.asarray(Image.open(tmp_path / "out" / "completed" / "a[1].png"))
    assert (known == np.asarray(Image.open(src / "a[1].png"))).all()  # its own all-known mask
