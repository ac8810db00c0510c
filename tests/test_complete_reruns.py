"""Re-running `inpaint complete` into a folder it wrote: with the same settings it resumes; with
other settings (mask, iterations, model...) it refuses unless --overwrite, naming what differs,
instead of counting images made otherwise as done; and an output folder inside the input folder
is never read as input."""

from __future__ import annotations

import json

from .conftest import run_cli, write_faces


def test_an_output_folder_inside_the_input_folder_is_not_completed_again(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    out = src / "out"
    for _ in range(2):
        r = run_cli("complete", src, "--outDir", out, "--model", tiny_run, "--iters", 1, "-q")
        assert r.exit_code == 0, r.output
    assert "completed 0, already done 2, failed 0" in r.output
    assert sorted(p.name for p in (out / "completed").iterdir()) == ["000.png", "001.png"]


def test_a_rerun_with_other_settings_is_refused_naming_them(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    out = tmp_path / "out"
    common = ["complete", src, "--outDir", out, "--model", tiny_run, "-q"]
    assert run_cli(*common, "--iters", 2).exit_code == 0
    record = (out / "run.json").read_bytes()
    r = run_cli(*common, "--iters", 3, "--mask-type", "left")
    assert r.exit_code == 1, r.output
    assert "holds completions made with other settings" in r.output
    assert "options.iters 2 there, 3 now" in r.output
    assert "mask center there, left now" in r.output
    assert "--overwrite" in r.output
    assert (out / "run.json").read_bytes() == record  # still says how the images were made
    r = run_cli(*common, "--iters", 2)  # the same settings resume
    assert r.exit_code == 0 and "already done 2" in r.output, r.output
    r = run_cli(*common, "--iters", 3, "--mask-type", "left", "--overwrite")
    assert r.exit_code == 0 and "completed 2" in r.output, r.output
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["options"]["iters"] == 3 and settings["mask"] == "left"


def test_a_rerun_with_another_model_is_refused(tiny_run, tmp_path):
    from inpaint.models import export_model, load_model

    loaded = load_model(tiny_run)
    other = export_model(tmp_path / "other", loaded.generator, loaded.discriminator,
                         loaded.config, storage="float16")  # other files, other hashes
    src = write_faces(tmp_path / "in", n=1, size=(16, 16))
    out = tmp_path / "out"
    assert run_cli("complete", src, "--outDir", out, "--model", tiny_run, "--iters", 1,
               "-q").exit_code == 0
    r = run_cli("complete", src, "--outDir", out, "--model", other, "--iters", 1, "-q")
    assert r.exit_code == 1, r.output
    assert "other settings (another model)" in r.output


def test_masks_with_nothing_known_or_nothing_to_fill_are_warned_about(tiny_run, tmp_path,
                                                                      caplog):
    import logging

    import numpy as np
    from PIL import Image

    from inpaint.batch import complete_files
    from inpaint.config import SearchOptions
    from inpaint.masks import MaskSpec
    from inpaint.models import load_model

    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(masks / "000.png")  # all known
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(masks / "001.png")  # nothing known
    with caplog.at_level(logging.WARNING):
        complete_files(sorted(src.iterdir()), tmp_path / "out", load_model(tiny_run),
                       mask=MaskSpec(folder=masks), options=SearchOptions(iters=1),
                       progress=False)
    assert f"the mask of {src / '000.png'} marks every pixel known" in caplog.text
    assert f"the mask of {src / '001.png'} marks no pixel known" in caplog.text
