import json
import os

import numpy as np
import pytest
from PIL import Image

from inpaint.batch import complete_files
from inpaint.config import SearchOptions
from inpaint.masks import MaskSpec, build_mask
from inpaint.records import output_stems

from .conftest import run_cli, write_faces


@pytest.fixture
def model(tiny_model):
    return tiny_model


def test_output_stems_are_unique_and_safe(tmp_path):
    assert output_stems([tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg", "..png"]) == [
        "x", "x-2", "image"]


def test_files_are_written_and_resume_skips(model, tmp_path):
    src = write_faces(tmp_path / "in", n=3, size=(16, 16))
    (src / "broken.png").write_bytes(b"junk")
    inputs = sorted(src.iterdir())
    out = tmp_path / "out"
    opts = SearchOptions(iters=4)
    s = complete_files(inputs, out, model, mask=MaskSpec("center"), options=opts, batch_size=2,
                       out_interval=2, progress=False)
    assert len(s.completed) == 3 and [p for p, _ in s.failed] == [str(src / "broken.png")]
    for sub in ("completed", "blended", "generated", "masked"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["000.png", "001.png", "002.png"]
    assert sorted(p.name for p in (out / "progress").iterdir()) == [
        "0000.png", "0002.png", "0004.png", "b001_0000.png", "b001_0002.png", "b001_0004.png"]
    assert len(list((out / "hats").iterdir())) == 6
    assert sorted(p.name for p in (out / "frames" / "002").glob("*.png")) == [
        "0000.png", "0002.png", "0004.png"]
    assert sorted(p.name for p in (out / "frames" / "002" / "generated").iterdir()) == [
        "0000.png", "0002.png", "0004.png"]  # G(z) of each frame, for make-gif to blend
    mask_file = np.asarray(Image.open(out / "masks" / "001.png"))
    assert (mask_file == np.where(build_mask("center", 16) > 0.5, 255, 0)).all()
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 5 and {"total", "contextual", "perceptual", "iter"} <= set(lines[0])
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["iters"] == 4 and run["model"]["sha256"]
    # known pixels in completed/ are bit-exact copies of the input
    m = build_mask("center", 16) > 0.5
    inp = np.asarray(Image.open(src / "001.png"))
    assert (np.asarray(Image.open(out / "completed" / "001.png"))[m] == inp[m]).all()
    before = (out / "completed" / "000.png").stat().st_mtime_ns
    s2 = complete_files(inputs, out, model, mask=MaskSpec("center"), options=opts,
                        progress=False)
    assert len(s2.skipped) == 3 and s2.completed == []
    assert (out / "completed" / "000.png").stat().st_mtime_ns == before


def _ink(region):
    """Whether a region of a white sheet has text or picture on it."""
    return (region < 128).any()


@pytest.mark.parametrize("blend", [True, False])
def test_sheet_magnifies_faces_and_labels_columns_and_files(model, tmp_path, blend):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    out = tmp_path / "out"
    complete_files(sorted(src.iterdir()), out, model, mask=MaskSpec("center"),
                   options=SearchOptions(iters=2), blend_result=blend, progress=False)
    sheet = np.asarray(Image.open(out / "sheet.png"))
    tile, pad = 192, 4  # 16-px faces magnified 12 times: at least 192 px
    ncols = 5 if blend else 4  # masked, G(z), completed, [blended,] original
    assert sheet.shape[1] == tile + ncols * (tile + pad) + pad  # file names, then the columns
    header = sheet.shape[0] - 2 * (tile + pad) - pad
    assert 20 <= header <= 60
    for c in range(ncols):
        left = tile + pad + c * (tile + pad)
        assert _ink(sheet[:header, left:left + tile]), f"no title over column {c}"
    for r, name in enumerate(["000.png", "001.png"]):
        top = header + r * (tile + pad)
        assert _ink(sheet[top:top + tile, :tile]), f"no file name on row {r}"
        original = np.asarray(Image.open(src / name))
        left = tile + pad + (ncols - 1) * (tile + pad)
        shown = sheet[top:top + tile, left:left + tile]
        assert (shown == np.repeat(np.repeat(original, 12, 0), 12, 1)).all()
        completed = np.asarray(Image.open(out / "completed" / name))
        left = tile + pad + 2 * (tile + pad)
        assert (sheet[top:top + tile:12, left:left + tile:12] == completed).all()


def test_sheet_scale_can_be_chosen_and_shrinks_for_many_images():
    from inpaint.batch import SHEET_MAX_PIXELS, sheet_scale_for

    assert sheet_scale_for(64, 12, 5) == 3 and sheet_scale_for(16, 2, 5) == 12
    assert sheet_scale_for(64, 400, 5) < 3  # 400 rows at 192 px would be 94 Mpx
    assert 400 * 6 * (64 * sheet_scale_for(64, 400, 5)) ** 2 <= SHEET_MAX_PIXELS
    assert sheet_scale_for(64, 100_000, 5) == 1


def test_other_sizes_are_resized_with_one_warning_naming_the_fix(model, tmp_path, caplog):
    src = write_faces(tmp_path / "in", n=3, size=(24, 24))
    with caplog.at_level("WARNING"):
        s = complete_files(sorted(src.iterdir()), tmp_path / "out", model,
                           mask=MaskSpec("center"), options=SearchOptions(iters=1),
                           progress=False)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING" and r.name.startswith("inpaint")]
    assert len(s.resized) == 3 and len(warnings) == 1
    assert "3 of 3 images are not 16x16" in warnings[0] and "is 24x24" in warnings[0]
    assert "inpaint align` fit this model with `--size 16`" in warnings[0]


def test_lowres_and_full_masks(model, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    for kind in ("lowres", "full", "grid", "random"):
        out = tmp_path / kind
        complete_files(sorted(src.iterdir()), out, model, mask=MaskSpec(kind),
                       options=SearchOptions(iters=2), progress=False)
        assert (out / "completed" / "000.png").exists()
    # full: every pixel is known, so completed is the input itself
    assert (np.asarray(Image.open(tmp_path / "full" / "completed" / "000.png"))
            == np.asarray(Image.open(src / "000.png"))).all()


def test_cli_complete_exit_codes(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    r = run_cli("complete", src, "--outDir", tmp_path / "o", "--model", tiny_run,
                "--iters", 2, "--maskType", "right", "-q")
    assert r.exit_code == 0, r.output
    assert "completed 2" in r.output
    (src / "bad.png").write_bytes(b"x")
    r = run_cli("complete", src, "--out-dir", tmp_path / "o", "--model", tiny_run, "--iters", 2,
                "--maskType", "right", "-q")
    assert r.exit_code == 1 and "already done 2, failed 1" in r.output
    assert "Traceback" not in r.output
    r = run_cli("complete", src, "--outDir", tmp_path / "o2", "--model", tmp_path / "nope")
    assert r.exit_code == 1 and "does not exist" in r.output
    r = run_cli("complete", src, "--outDir", tmp_path / "o3", "--model", tiny_run,
                "--mask-box", "1,2,3")
    assert r.exit_code == 2 and "X,Y,W,H" in r.output
    r = run_cli("complete", src, "--outDir", tmp_path / "o4", "--model", tiny_run,
                "--optimizer", "sgd")
    assert r.exit_code == 2
    mask = tmp_path / "m.png"
    Image.new("L", (7, 7), 255).save(mask)
    r = run_cli("complete", src / "000.png", "--outDir", tmp_path / "o5", "--model", tiny_run,
                "--mask", mask, "-q")
    assert r.exit_code == 1 and "m.png is 7x7" in r.output


def test_finetune_search_through_files_is_batch_independent_exact_and_resumable(model, tmp_path):
    from inpaint.errors import RunDirError

    src = write_faces(tmp_path / "in", n=3, size=(16, 16))
    inputs = sorted(src.iterdir())
    opts = SearchOptions(iters=3, search="finetune", finetune_steps=3, finetune_lr=1e-3,
                         precision="float32")
    outs = {}
    for bs in (1, 3):
        outs[bs] = tmp_path / f"out{bs}"
        complete_files(inputs, outs[bs], model, mask=MaskSpec("center"), options=opts,
                       batch_size=bs, progress=False)
    m = build_mask("center", 16) > 0.5
    for p in inputs:
        a = np.asarray(Image.open(outs[1] / "completed" / p.name), np.int16)
        b = np.asarray(Image.open(outs[3] / "completed" / p.name), np.int16)
        assert np.abs(a - b).max() <= 1  # float rounding of the z search, at most one level
        assert (a[m] == np.asarray(Image.open(p))[m]).all()
    s = complete_files(inputs, outs[3], model, mask=MaskSpec("center"), options=opts,
                       progress=False)
    assert len(s.skipped) == 3
    with pytest.raises(RunDirError, match="search"):
        complete_files(inputs, outs[3], model, mask=MaskSpec("center"),
                       options=SearchOptions(iters=3, precision="float32"), progress=False)


def test_a_file_name_with_a_newline_completes_and_gets_its_sheet(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=1, size=(16, 16))
    (src / "000.png").rename(src / "two\nlines.png")
    r = run_cli("complete", src, "--outDir", tmp_path / "o", "--model", tiny_run,
                "--iters", 2, "-q")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "sheet.png").is_file()
    assert json.loads((tmp_path / "o" / "run.json").read_text())["finished"] is True


def test_a_name_of_252_bytes_without_extension_is_completed_beside_the_others(tiny_run, tmp_path):
    # "names are cut to fit 255 bytes" (README): 252 bytes + ".png" used to abort the whole run
    src = write_faces(tmp_path / "in", n=3, size=(16, 16))
    long = src / ("a" * 252)
    (src / "000.png").rename(long)
    wide = src / ("é" * 127)  # 254 bytes of two-byte characters: its stem must lose 3 bytes
    (src / "001.png").rename(wide)
    r = run_cli("complete", long, wide, src / "002.png", "--outDir", tmp_path / "o",
                "--model", tiny_run, "--iters", 2, "-q")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "o" / "completed").iterdir())
    assert len(names) == 3 and all(len(os.fsencode(n)) <= 255 for n in names)
    assert names[1] == "a" * 251 + ".png"  # cut to fit, no more
    assert names[2] == "é" * 125 + ".png"  # cut at a character's end (251 bytes would split one)
    assert all("\udcc3" not in n for n in names)  # no half character (surrogate escape)
