"""The face model shipped inside the package, and the demo samples."""

import json

import numpy as np
from click.testing import CliRunner

from inpaint.cli import cli
from inpaint.images import find_images, read_image
from inpaint.models import PRETRAINED_DIR, load_model

from .conftest import ROOT


def test_shipped_model_loads_verified_and_small():
    model = load_model(PRETRAINED_DIR)  # checksums verified
    assert model.config.model.image_size == 64 and model.meta["storage"] == "float16"
    assert all(w.dtype == "float32" for w in model.generator.weights)
    size = sum(f.stat().st_size for f in PRETRAINED_DIR.iterdir())
    assert size < 30e6
    assert model.encoder is not None  # for this generator: load_model checks that


def test_the_shipped_encoder_proposes_a_face_close_to_the_known_pixels():
    """The encoder's G(E(x)) fits the known pixels of the demo faces far closer than G of
    random z does (what it was trained for), so a short search starting there suffices."""
    from inpaint.images import to_float
    from inpaint.masks import build_mask
    from inpaint.models import propose

    model = load_model(PRETRAINED_DIR)
    faces = np.stack([read_image(p) for p in find_images(ROOT / "data" / "samples")])
    masks = np.stack([build_mask("center", 64)] * len(faces))
    z = propose(model.encoder, faces, masks)
    rand = np.random.default_rng(0).uniform(-1, 1, z.shape).astype("float32")
    known = masks[..., None] > 0.5

    def known_l1(zs):
        g = model.generator(zs, training=False).numpy()
        return np.abs(g - to_float(faces))[np.broadcast_to(known, g.shape)].mean()

    assert known_l1(z) < 0.6 * known_l1(rand)


def test_shipped_model_generates_faces_not_noise():
    """G(z) of the shipped model is smooth like a photo: neighbouring pixels differ far less
    than in noise, and the samples vary with z."""
    model = load_model(PRETRAINED_DIR)
    z = np.random.default_rng(0).uniform(-1, 1, (8, 100)).astype("float32")
    x = model.generator(z, training=False).numpy()
    step = np.abs(np.diff(x, axis=2)).mean()
    assert step < 0.15 and x.std(axis=0).mean() > 0.1


def test_demo_samples_are_aligned_64px_faces():
    samples = find_images(ROOT / "data" / "samples")
    assert len(samples) == 12
    assert all(read_image(p).shape == (64, 64, 3) for p in samples)


def test_complete_defaults_to_the_shipped_model(tmp_path):
    sample = find_images(ROOT / "data" / "samples")[0]
    r = CliRunner().invoke(cli, ["complete", str(sample), "--outDir", str(tmp_path),
                                 "--iters", "2", "-q"])
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["model"]["path"] == str(PRETRAINED_DIR)
