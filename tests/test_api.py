"""The package's Python API: `import inpaint` is cheap, the exported names work, TensorFlow's
C++ start-up lines stay hidden."""

import subprocess
import sys

import numpy as np

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
