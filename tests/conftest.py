"""What the test files share: the tiny config, a folder of small images, a tiny trained run, the
CLI run in-process (run_cli) or as a subprocess (Running), and checks used in several files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inpaint.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TINY = ROOT / "configs" / "tiny.toml"
ASTRONAUT = ROOT / "data" / "photos" / "astronaut.jpg"
LIMIT = 180  # seconds any one command may take here before the test fails


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


def run_cli(*args):
    """`inpaint ARGS` in this process (click's CliRunner): its exit code and output."""
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="inpaint")


def run_without_tensorflow(code: str) -> None:
    """Run the Python `code` in a fresh interpreter; fail if it fails or imports TensorFlow
    (what needs no network must start at once)."""
    code += "\nimport sys\nassert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def dlib_missing() -> str | None:
    """Why the dlib tests cannot run here, or None."""
    from inpaint import align
    from inpaint.errors import AlignError

    try:
        import dlib  # noqa: F401
    except ImportError:
        return "dlib is not installed (pip install 'inpaint[align]')"
    try:
        align.default_predictor_path()
    except AlignError as exc:
        return str(exc)
    return None


needs_dlib = pytest.mark.skipif(dlib_missing() is not None,
                                reason=f"needs dlib's 68-point model: {dlib_missing()}")


def whole_json_lines(path: Path) -> list:
    """The JSON values of the lines of `path` ([] if it is missing), a line that a kill cut short
    left out. Written here rather than taken from inpaint.records, so that the crash tests do not
    check the library's reader with itself."""
    if not path.is_file():
        return []
    values = []
    for line in path.read_text().splitlines():
        try:
            values.append(json.loads(line))
        except ValueError:
            pass  # the line a kill cut short
    return values


def logged_steps(run: Path) -> list[int]:
    """The steps of a run's metrics.jsonl."""
    return [rec["step"] for rec in whole_json_lines(run / "metrics.jsonl")]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Running:
    """`python -m inpaint ARGS` in a subprocess, its output collected as it comes."""

    def __init__(self, *args, cwd: Path | None = None):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        # A shell that starts jobs in the background (CI runners, `nohup ... &`) passes SIGINT
        # on ignored, and Python then installs no Ctrl-C handler; a terminal would not.
        self.proc = subprocess.Popen([sys.executable, "-m", "inpaint", *map(str, args)],
                                     cwd=cwd or ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=_default_sigint)
        self.stdout, self.stderr = bytearray(), bytearray()
        self._pumps = [threading.Thread(target=self._pump, args=(s, b), daemon=True)
                       for s, b in ((self.proc.stdout, self.stdout),
                                    (self.proc.stderr, self.stderr))]
        for t in self._pumps:
            t.start()

    @staticmethod
    def _pump(stream, buf: bytearray) -> None:
        while chunk := os.read(stream.fileno(), 65536):
            buf.extend(chunk)

    def wait_until(self, condition, timeout: float = LIMIT) -> None:
        """Poll `condition()` until it holds; fail if the command ends or the time runs out."""
        end = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                self.finish()
                pytest.fail(f"the command ended (exit {self.proc.returncode}) before the moment "
                            f"to interrupt it:\n{self.text(self.stderr)[-2000:]}")
            if time.monotonic() > end:
                self.kill()
                pytest.fail("the moment to interrupt the command never came")
            time.sleep(0.02)

    def kill(self) -> None:
        self.proc.kill()
        self.finish()

    def finish(self, timeout: float = LIMIT) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the command did not end within {timeout} s")
        for t in self._pumps:
            t.join(10)
        return self.proc.returncode

    @staticmethod
    def text(buf: bytearray) -> str:
        return bytes(buf).decode(errors="replace")


def run_to_end(*args, cwd: Path | None = None) -> tuple[int, str, str]:
    r = Running(*args, cwd=cwd)
    code = r.finish()
    return code, r.text(r.stdout), r.text(r.stderr)


@pytest.fixture(scope="session")
def tiny_encoder_run(tiny_run, tmp_path_factory):
    """An encoder trained a few steps for the tiny model: its run directory (model/ holds the
    tiny model with encoder.keras)."""
    from inpaint.config import EncoderConfig
    from inpaint.encoder import train_encoder
    from inpaint.models import load_model

    base = tmp_path_factory.mktemp("tiny_encoder")
    data = write_faces(base / "faces", n=16)
    cfg = EncoderConfig(filters=4, steps=4, batch_size=8, checkpoint_every=2, precision="float32")
    train_encoder(load_model(tiny_run), [data], base / "run", cfg)
    return base / "run"


def null_space_weights(trainer) -> set[str]:
    """Paths of the weights a following batch norm cancels: the bias of the layer right before
    each batch norm, and that batch norm's moving mean (which tracks it)."""
    import keras

    out = set()
    for model in (trainer.generator, trainer.discriminator):
        for before, layer in zip(model.layers, model.layers[1:]):
            if isinstance(layer, keras.layers.BatchNormalization) and getattr(before, "bias",
                                                                              None) is not None:
                out |= {before.bias.path, layer.moving_mean.path}
    return out
