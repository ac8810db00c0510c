"""The package's Python API: `import inpaint` is cheap, the exported names work, TensorFlow's
C++ start-up lines stay hidden."""

import subprocess
import sys

import numpy as np
import pytest

import inpaint

from .conftest import ROOT


def test_exports_are_loaded_on_use_and_complete_and_fill_stay_the_functions(tiny_run):
    import importlib

    from inpaint.config import SearchOptions

    batch = importlib.import_module("inpaint.batch")  # complete's file layer: its own name
    importlib.import_module("inpaint.fill")  # the submodule of the same name as the function
    assert callable(inpaint.complete) and callable(inpaint.fill)
    assert inpaint.complete_files is batch.complete_files
    assert inpaint.SearchOptions is SearchOptions
    assert set(inpaint.__all__) <= set(dir(inpaint))
    model = inpaint.load_model(tiny_run)
    faces = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    masks = np.stack([inpaint.build_mask("center", 16), inpaint.box_mask((2, 2, 4, 4), 16)])
    r = inpaint.complete(model.generator, model.discriminator, faces, masks,
                         options=inpaint.SearchOptions(iters=2))
    assert r.blended.shape == (2, 16, 16, 3)
    assert (r.blended[masks > 0.5] == faces[masks > 0.5]).all()


def test_import_is_fast_and_tensorflow_quiet():
    code = ("import sys, inpaint\n"
            "assert 'tensorflow' not in sys.modules\n"
            "m = inpaint.load_model()\n"  # the shipped model
            "print(m.config.model.image_size)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "64"
    assert "oneDNN" not in r.stderr and "I0000" not in r.stderr and "cuda" not in r.stderr, r.stderr


def test_public_functions_raise_the_librarys_errors_for_bad_arguments(tmp_path):
    """What a caller can pass wrongly is an InpaintError naming it, never a ValueError from
    numpy or an AttributeError from deep inside (issue: 13 such calls)."""
    import inpaint
    from inpaint.errors import InpaintError

    photo = np.zeros((40, 40, 3), np.uint8)
    bad = {
        "mask of size -3": lambda: inpaint.build_mask("center", -3),
        "mask of size 0": lambda: inpaint.build_mask("center", 0),
        "box of two numbers": lambda: inpaint.box_mask((1, 2), 64),
        "box with NaN": lambda: inpaint.box_mask((float("nan"), 0, 4, 4), 64),
        "fill box of two": lambda: inpaint.fill(photo, box=(1, 2)),
        "fill grow NaN": lambda: inpaint.fill(photo, region="mouth", grow=float("nan")),
        "fill grow -5": lambda: inpaint.fill(photo, region="mouth", grow=-5),
        "fill mask of another shape": lambda: inpaint.fill(photo, mask=np.ones((3, 3))),
        "options of the wrong type": lambda: inpaint.SearchOptions(iters="a").validate(),
        "options as a dict with a typo": lambda: inpaint.fill(photo, region="mouth",
                                                              options={"iter": 3}),
        "a Completer of a string that is no model": lambda: inpaint.Completer(str(tmp_path)),
        "a Completer of a number": lambda: inpaint.Completer(3),
        "read_image(None)": lambda: inpaint.read_image(None),
        "write_image of 5 channels": lambda: inpaint.write_image(tmp_path / "x.png",
                                                                np.zeros((4, 4, 5), np.uint8)),
    }
    for what, call in bad.items():
        with pytest.raises(InpaintError):
            call()
            pytest.fail(f"{what}: no error")
    c = inpaint.Completer(inpaint.load_model(), {"iters": 1})  # a dict of options is taken
    assert c.options.iters == 1
    with pytest.raises(InpaintError, match="batch of 0"):
        c(np.zeros((0, 64, 64, 3), np.uint8), np.zeros((0, 64, 64)))
    with pytest.raises(InpaintError, match="shape|is 3x3"):
        inpaint.fill(photo, mask=np.ones((3, 3)))
