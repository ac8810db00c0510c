"""Numbers a user can give that no computation survives: NaN, infinities, negative seeds, rates
of nothing. Each is refused before any work (usage error, exit 2, or ConfigError), and what slips
through anyway (a model whose weights are NaN, a loss that overflows) stops with one `Error:` line
instead of writing black images or bare NaN into JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from inpaint.config import apply_overrides, load_config
from inpaint.errors import ConfigError, Diverged, InpaintError, ModelError

from .conftest import TINY, run_cli, tiny_config, write_faces


def strict_json_lines(path: Path) -> list[dict]:
    """Every line of a JSONL file, refusing the NaN and Infinity that json.dumps writes (they
    are not JSON: other readers reject them)."""
    def refuse(name):
        raise ValueError(f"{path}: {name} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("override", [
    "train.lr=nan", "train.lr=inf", "train.beta1=nan", "train.adam_epsilon=-1",
    "train.adam_epsilon=nan", "train.seed=-1", "model.bn_epsilon=nan", "model.bn_epsilon=0",
    "model.leak=nan", "model.leak=-0.5", "model.init_stddev=-1e30", "model.init_stddev=inf",
    "model.bn_momentum=nan", "model.bn_momentum=2.0", "data.crop_fraction=nan",
])
def test_non_finite_and_out_of_range_config_values_are_refused(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(tiny_config(), [override])


def test_nan_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(TINY.read_text().replace("bn_epsilon = 1e-5", "bn_epsilon = nan"))
    with pytest.raises(ConfigError, match=r"model\.bn_epsilon must be a finite number"):
        load_config(path)


def test_train_set_nan_is_a_usage_error(tmp_path):
    r = run_cli("train", "--dataset", write_faces(tmp_path / "faces"), "--out", tmp_path / "run",
            "--config", TINY, "--set", "train.lr=nan")
    assert r.exit_code == 2, r.output
    assert "train.lr must be a finite number" in r.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [
    ["--lr", "nan"], ["--lam", "nan"], ["--momentum", "nan"], ["--lam", "inf"],
    ["--max-shift", "nan"], ["--max-shift", "inf"], ["--center-scale", "nan"],
    ["--missing-fraction", "nan"], ["--seed", "-1"], ["--iters", "1000000000"],
    ["--codes", "1000"], ["--restarts", "100000"], ["--encoder-norm", "nan"],
    ["--encoder-norm", "0"], ["--encoder-norm", "3"], ["--encoder-norm", "fast"],
])
def test_complete_refuses_non_finite_options_before_any_work(args, tmp_path):
    src = write_faces(tmp_path / "in", n=1, size=(16, 16))
    r = run_cli("complete", src, "--outDir", tmp_path / "out", "--model", tmp_path / "no-model",
            *args)
    assert r.exit_code == 2, r.output
    assert args[0] in r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--lr", "nan"], ["--lam", "nan"], ["--seed", "-1"]])
def test_evaluate_refuses_non_finite_options(args, tmp_path):
    src = write_faces(tmp_path / "in", n=1, size=(16, 16))
    r = run_cli("evaluate", src, "--model", tmp_path / "no-model", *args)
    assert r.exit_code == 2, r.output
    assert args[0] in r.output


def test_train_refuses_a_negative_seed(tmp_path):
    r = run_cli("train", "--dataset", write_faces(tmp_path / "faces"), "--out", tmp_path / "run",
            "--config", TINY, "--seed", "-1")
    assert r.exit_code == 2, r.output
    assert "train.seed" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("args", [["--fps", "1e-300"], ["--fps", "nan"], ["--fps", "inf"],
                                  ["--hold-last", "nan"]])
def test_make_gif_refuses_rates_no_player_can_show(args, tmp_path):
    frames = write_faces(tmp_path / "frames", n=2, size=(8, 8))
    r = run_cli("make-gif", frames, "-o", tmp_path / "a.webp", *args)
    assert r.exit_code == 2, r.output
    assert args[0] in r.output
    assert not (tmp_path / "a.webp").exists()


def test_the_library_refuses_an_fps_below_the_minimum(tmp_path):
    from inpaint import gif

    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    with pytest.raises(InpaintError, match="fps must be at least"):
        gif.write_animation(frames, tmp_path / "a.gif", fps=1e-300)


@pytest.mark.parametrize("field,value", [("lr", math.nan), ("lam", math.inf),
                                         ("momentum", math.nan), ("max_shift", math.nan),
                                         ("seed", -1), ("lam", -1.0),
                                         ("encoder_norm", math.nan)])
def test_search_options_refuse_non_finite_and_negative_values(field, value):
    from inpaint.config import SearchOptions

    with pytest.raises(InpaintError, match=field):
        SearchOptions(**{field: value}).validate()


# ----------------------------------------------------------------------------- NaN weights


def nan_model(run_dir: Path, tmp_path: Path) -> Path:
    """The run's model exported again with one NaN weight: checksums match, weights do not."""
    from inpaint.models import export_model, load_model

    loaded = load_model(run_dir)
    weights = loaded.generator.get_weights()
    weights[0] = weights[0].copy()
    weights[0].flat[0] = np.nan
    loaded.generator.set_weights(weights)
    return export_model(tmp_path / "nan-model", loaded.generator, loaded.discriminator,
                        loaded.config)


@pytest.mark.parametrize("field,value,named", [("iters", 10**9, "iterations"),
                                               ("codes", 1000, "codes"),
                                               ("restarts", 10**5, "restarts")])
def test_search_options_refuse_absurd_sizes(field, value, named):
    from inpaint.config import MAX_CODES, MAX_ITERS, MAX_RESTARTS, SearchOptions

    with pytest.raises(InpaintError, match=named):
        SearchOptions(**{field: value}).validate()
    bound = {"iters": MAX_ITERS, "codes": MAX_CODES, "restarts": MAX_RESTARTS}[field]
    SearchOptions(**{field: bound}).validate()  # the bound itself is allowed


def test_a_model_with_nan_weights_is_refused_on_load(tiny_run, tmp_path):
    from inpaint.models import load_model

    path = nan_model(tiny_run, tmp_path)
    with pytest.raises(ModelError, match="NaN or infinite"):
        load_model(path)
    src = write_faces(tmp_path / "in", n=1, size=(16, 16))
    r = run_cli("complete", src, "--outDir", tmp_path / "out", "--model", path, "-q")
    assert r.exit_code == 1, r.output
    assert "Error: " in r.output and "NaN or infinite" in r.output
    assert not (tmp_path / "out" / "completed").exists()


def test_a_search_whose_loss_becomes_nan_stops_with_an_error(tiny_run):
    from inpaint.config import SearchOptions
    from inpaint.models import load_model
    from inpaint.search import complete

    loaded = load_model(tiny_run)
    weights = loaded.generator.get_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)  # the last bias: G(z), and the loss, NaN
    loaded.generator.set_weights(weights)
    images = np.full((1, 16, 16, 3), 128, np.uint8)
    masks = np.ones((1, 16, 16), np.float32)
    masks[:, 4:12, 4:12] = 0
    seen = []
    with pytest.raises(Diverged, match="iteration 0"):
        complete(loaded.generator, loaded.discriminator, images, masks,
                 options=SearchOptions(iters=3), callback=lambda *a: seen.append(a))
    assert seen == []  # nothing non-finite reached the callback (log.jsonl, frames)


# ----------------------------------------------------------------------------- training


def test_training_that_diverges_stops_and_keeps_its_last_good_checkpoint(tmp_path, monkeypatch):
    from inpaint.checkpoints import list_checkpoints
    from inpaint.train import GANTrainer, prepare_run_dir, train

    original = GANTrainer.train_step

    def poisoned(self, real):  # step 7's losses come out NaN, as an overflow would make them
        losses = original(self, real)
        return {**losses, "g_loss": math.nan} if self.step == 7 else losses

    monkeypatch.setattr(GANTrainer, "train_step", poisoned)
    cfg = tiny_config()
    run_dir = tmp_path / "run"
    prepare_run_dir(run_dir, cfg)
    with pytest.raises(Diverged, match="step 7.*ckpt-0000005"):
        train(write_faces(tmp_path / "faces", n=16), run_dir, cfg, progress=False)
    assert [p.name for p in list_checkpoints(run_dir / "checkpoints")] == ["ckpt-0000005"]
    assert [r["step"] for r in strict_json_lines(run_dir / "metrics.jsonl")] == [1, 2, 3, 4, 5,
                                                                                   6]
    assert not (run_dir / "model").exists()


def test_train_with_an_overflowing_rate_ends_in_one_error_line(tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli("train", "--dataset", write_faces(tmp_path / "faces", n=16), "--out", run_dir,
            "--config", TINY, "--set", "train.lr=1e30", "-q")
    assert r.exit_code == 1, r.output
    assert "Error: training diverged at step 1" in r.output
    assert "Traceback" not in r.output
    metrics = run_dir / "metrics.jsonl"
    assert not metrics.exists() or strict_json_lines(metrics) == []


@pytest.mark.parametrize("stem", ["../../elsewhere", "..", "a/../../../elsewhere"])
def test_make_gif_image_stem_cannot_leave_the_frames_folder(stem, tmp_path):
    from inpaint import gif

    src = tmp_path / "out"
    write_faces(src / "frames" / "000", n=2, size=(8, 8))
    write_faces(tmp_path / "elsewhere", n=2, size=(8, 8))  # what ../../elsewhere reaches
    r = run_cli("make-gif", src, "--image", stem, "-o", tmp_path / "a.gif", "-q")
    assert r.exit_code == 2, r.output
    assert "not a path" in r.output
    assert not (tmp_path / "a.gif").exists()
    with pytest.raises(InpaintError, match="not a path"):
        gif.collect_frames(src, image=stem)


def test_ctrl_c_while_a_gif_is_encoded_is_a_keyboard_interrupt_and_leaves_no_file(
        tmp_path, monkeypatch):
    """Ctrl-C between two frames: the KeyboardInterrupt reaches the command (which prints one
    line and exits 130), not a TypeError from the writer flushing a half-gathered animation."""
    from inpaint import gif

    original, calls = gif.quantize_frame, []

    def interrupted_at_the_second(frame):
        calls.append(1)
        if len(calls) == 2:  # one frame gathered: Pillow then wants one duration, not a list
            raise KeyboardInterrupt
        return original(frame)

    monkeypatch.setattr(gif, "quantize_frame", interrupted_at_the_second)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    with pytest.raises(KeyboardInterrupt):
        gif.write_animation(frames, tmp_path / "a.gif", fps=10)
    assert sorted(tmp_path.iterdir()) == []
