"""Shared fixtures: the tiny config, a folder of small images, a tiny trained run."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def tiny_config():
    from inpaint.config import load_config

    return load_config(ROOT / "configs" / "tiny.toml")


@pytest.fixture
def tiny_cfg():
    return tiny_config()


def write_faces(folder: Path, n: int = 12, size: tuple[int, int] = (20, 24), seed: int = 0):
    """n smooth random RGB images (w, h) in `folder` as PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        low = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(low).resize(size, Image.Resampling.BILINEAR).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def image_dir(tmp_path):
    return write_faces(tmp_path / "faces")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny DCGAN trained for a few steps and exported: the run directory."""
    from inpaint.train import prepare_run_dir, train

    base = tmp_path_factory.mktemp("tiny_run")
    data = write_faces(base / "faces", n=16)
    cfg = tiny_config()
    run = base / "run"
    prepare_run_dir(run, cfg)
    train(data, run, cfg, progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
    """The tiny run's exported model, loaded once (models.LoadedModel)."""
    from inpaint.models import load_model

    return load_model(tiny_run)


@pytest.fixture(scope="session")
def tiny_encoder_run(tiny_run, tmp_path_factory):
    """An encoder trained a few steps for the tiny model: its run directory (model/ holds the
    tiny model with encoder.keras)."""
    from inpaint.encoder import EncoderConfig, train_encoder
    from inpaint.models import load_model

    base = tmp_path_factory.mktemp("tiny_encoder")
    data = write_faces(base / "faces", n=16)
    cfg = EncoderConfig(filters=4, steps=4, batch_size=8, checkpoint_every=2, precision="float32")
    train_encoder(load_model(tiny_run), [data], base / "run", cfg)
    return base / "run"
