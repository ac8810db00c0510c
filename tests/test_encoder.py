"""The encoder that proposes z (its network inpaint.models', its training inpaint.encoder's):
network, masks, training, resume, export, and its use as the search's starting point."""

import json
import shutil

import numpy as np
import pytest

from inpaint.config import DEFAULT_ENCODER_NORM, EncoderConfig
from inpaint.encoder import TRAINING_MASK_KINDS, EncoderTrainer, training_masks
from inpaint.errors import ConfigError, InpaintError, ModelError, RunDirError
from inpaint.masks import build_mask
from inpaint.models import build_encoder, propose


def faces(n=3, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_training_masks_are_binary_reproducible_and_have_holes():
    a = training_masks(np.random.default_rng(3), 200, 16)
    b = training_masks(np.random.default_rng(3), 200, 16)
    assert a.shape == (200, 16, 16) and a.dtype == np.float32
    assert set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, b)
    missing = 1.0 - a.mean(axis=(1, 2))
    assert (missing > 0).all() and (missing < 1).all()  # every mask has a hole and a context
    assert len(TRAINING_MASK_KINDS) == 5


def test_encoder_maps_a_masked_face_to_z_in_the_box_independently_of_the_batch(tiny_cfg):
    enc = build_encoder(tiny_cfg.model, filters=4)
    assert tuple(enc.input_shape[1:]) == (16, 16, 4) and tuple(enc.output_shape[1:]) == (8,)
    images, masks = faces(5), np.stack([build_mask("center", 16)] * 5)
    z = propose(enc, images, masks)
    assert z.shape == (5, 8) and np.abs(z).max() <= 1.0
    np.testing.assert_allclose(propose(enc, images[3:4], masks[3:4]), z[3:4], atol=1e-6)
    # the hole's pixels do not reach the encoder
    changed = images.copy()
    changed[:, 6:10, 6:10] = 255 - changed[:, 6:10, 6:10]
    np.testing.assert_array_equal(propose(enc, changed, masks), z)


def test_encoder_config_refuses_bad_values():
    for bad in (dict(batch_size=7), dict(lr=float("nan")), dict(steps=0), dict(seed=-1),
                dict(precision="float64"), dict(beta1=1.0)):
        with pytest.raises(ConfigError):
            EncoderConfig(**bad).validate()


def test_an_interrupted_encoder_run_resumes_to_the_same_weights(tiny_model, tmp_path):
    data = faces(16)
    cfg = EncoderConfig(filters=4, batch_size=8, precision="float32")

    def trainer(start=None):
        tr = EncoderTrainer(tiny_model.generator, tiny_model.config.model, cfg)
        if start is not None:
            tr.encoder.set_weights(start.encoder.get_weights())
        return tr

    straight = trainer()
    first = trainer(start=straight)  # the same start
    for _ in range(4):
        straight.train_step(data)
    for _ in range(2):
        first.train_step(data)
    first.save_checkpoint(tmp_path / "ckpt", keep=2)
    resumed = trainer()
    assert resumed.restore_latest(tmp_path / "ckpt").name == "ckpt-0000002"
    for _ in range(2):
        resumed.train_step(data)
    assert resumed.step == straight.step == 4
    for a, b in zip(resumed.encoder.get_weights(), straight.encoder.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(first.encoder.get_weights()[0], straight.encoder.get_weights()[0])


def test_the_train_step_fits_a_fixed_batch(tiny_model, monkeypatch):
    """Steps on one batch held fixed must lower its loss (what the step computes is a loss its
    update descends)."""
    cfg = EncoderConfig(filters=8, batch_size=16, lr=1e-3, precision="float32")
    tr = EncoderTrainer(tiny_model.generator, tiny_model.config.model, cfg)
    fixed = tr.batch(faces(16))
    monkeypatch.setattr(tr, "batch", lambda _faces: fixed)
    losses = [tr.train_step(None)["loss"] for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.7 * losses[0]


def test_train_encoder_exports_a_model_that_loads_with_its_encoder(tiny_encoder_run):
    from inpaint.models import load_model

    model = load_model(tiny_encoder_run / "model")
    assert model.encoder is not None
    meta = json.loads((tiny_encoder_run / "model" / "model.json").read_text())
    assert meta["encoder"]["steps"] == 4
    assert meta["encoder"]["for_generator"] == meta["sha256"]["generator.keras"]
    ckpts = sorted(p.name for p in (tiny_encoder_run / "checkpoints").iterdir())
    assert ckpts == ["ckpt-0000002", "ckpt-0000004"]


def test_an_encoder_for_another_generator_or_a_changed_file_is_refused(tiny_encoder_run,
                                                                        tmp_path):
    from inpaint.models import load_model

    other = tmp_path / "other"
    shutil.copytree(tiny_encoder_run / "model", other)
    meta = json.loads((other / "model.json").read_text())
    meta["encoder"]["for_generator"] = "0" * 64
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="another generator"):
        load_model(other)
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_encoder_run / "model", damaged)
    with open(damaged / "encoder.keras", "ab") as f:
        f.write(b"x")
    with pytest.raises(ModelError, match="encoder.keras"):
        load_model(damaged)
    (damaged / "encoder.keras").unlink()
    with pytest.raises(ModelError, match="encoder.keras is missing"):
        load_model(damaged)


def test_a_resumed_encoder_run_with_other_settings_is_refused(tiny_encoder_run, tiny_run, tmp_path):
    from inpaint.encoder import train_encoder
    from inpaint.models import load_model

    run = tmp_path / "run"
    shutil.copytree(tiny_encoder_run, run)
    settings = json.loads((run / "encoder.json").read_text())
    with pytest.raises(RunDirError, match="filters"):
        train_encoder(load_model(tiny_run), settings["datasets"], run,
                      EncoderConfig(filters=8, steps=6, batch_size=8, precision="float32"))


def test_search_starts_from_the_encoders_proposal(tiny_encoder_run):
    from inpaint.config import SearchOptions
    from inpaint.models import load_model
    from inpaint.search import Completer

    model = load_model(tiny_encoder_run / "model")
    images, masks = faces(3), np.stack([build_mask("left", 16)] * 3)
    proposed = propose(model.encoder, images, masks)
    for init in ("encoder", "auto"):
        for off in ("off", None):  # as proposed (the default rescales it: the test below)
            r = Completer(model, SearchOptions(iters=0, init=init, encoder_norm=off,
                                               precision="float32"))(images, masks)
            np.testing.assert_allclose(r.z, proposed, atol=1e-6)
    # restarts: the first starts from the encoder, the others at random; the best one wins
    r = Completer(model, SearchOptions(iters=0, init="encoder", restarts=3,
                                       precision="float32"))(images, masks)
    rand = Completer(model, SearchOptions(iters=0, init="random", restarts=3,
                                          precision="float32"))(images, masks)
    assert (r.losses["total"][-1] <= rand.losses["total"][-1] + 1e-4).all() or \
        not np.allclose(r.z, rand.z)
    assert not np.allclose(Completer(model, SearchOptions(iters=0, init="random"))(
        images, masks).z, proposed)


def test_rescaled_proposals_keep_their_direction_at_the_asked_length():
    from inpaint.search import rescale_proposal

    rng = np.random.default_rng(0)
    z = (rng.uniform(-1, 1, (5, 100)) * 0.3).astype(np.float32)  # short, as the encoder's are
    typical = np.sqrt(100 / 3)
    out = rescale_proposal(z, 0.8)
    # 0.8 * 5.77 = 4.6 over 100 entries of about +-0.46: none reaches the cube's face
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 0.8 * typical, rtol=1e-5)
    np.testing.assert_allclose(out / np.linalg.norm(out, axis=1, keepdims=True),
                               z / np.linalg.norm(z, axis=1, keepdims=True), atol=1e-6)
    long = rescale_proposal(z, 2.0)  # past sqrt(3) * typical = sqrt(100) the cube clips
    assert np.abs(long).max() <= 1.0 and (np.linalg.norm(long, axis=1) <= 10.0 + 1e-5).all()
    zero = rescale_proposal(np.zeros((1, 100), np.float32), 0.8)
    assert np.isfinite(zero).all() and not zero.any()


def test_the_search_starts_from_the_rescaled_proposal(tiny_encoder_run, tiny_model):
    from inpaint.config import SearchOptions
    from inpaint.models import load_model
    from inpaint.search import Completer, rescale_proposal

    model = load_model(tiny_encoder_run / "model")
    images, masks = faces(3), np.stack([build_mask("left", 16)] * 3)
    proposed = propose(model.encoder, images, masks)
    r = Completer(model, SearchOptions(iters=0, encoder_norm=0.9, precision="float32"))(
        images, masks)
    np.testing.assert_allclose(r.z, rescale_proposal(proposed, 0.9), atol=1e-6)
    assert not np.allclose(r.z, proposed, atol=1e-3)
    # the default, "auto": DEFAULT_ENCODER_NORM from the encoder; an int is a number too
    assert SearchOptions().encoder_norm == "auto"
    for norm, want in (("auto", DEFAULT_ENCODER_NORM), (1, 1.0)):
        r = Completer(model, SearchOptions(iters=0, encoder_norm=norm, precision="float32"))(
            images, masks)
        np.testing.assert_allclose(r.z, rescale_proposal(proposed, want), atol=1e-6)
    # ... and nothing where the search starts from random z: the same z as "off" there
    rand = {norm: Completer(model, SearchOptions(iters=0, init="random", encoder_norm=norm,
                                                 precision="float32"))(images, masks).z
            for norm in ("auto", "off")}
    np.testing.assert_array_equal(rand["auto"], rand["off"])
    assert Completer(tiny_model, SearchOptions()).options.encoder_norm is None
    # it rescales the encoder's proposal: refused where the search starts from random z
    for model_, init, lowres in ((model, "random", False), (tiny_model, "auto", False),
                                 (model, "auto", True)):
        with pytest.raises(InpaintError, match="encoder norm"):
            Completer(model_, SearchOptions(init=init, encoder_norm=0.9), lowres=lowres)
    for bad in (0.0, -1.0, 2.5, "fast", "", "AUTO"):
        with pytest.raises(InpaintError, match="encoder norm"):
            SearchOptions(encoder_norm=bad).validate()
    with pytest.raises(InpaintError, match="encoder_norm must be"):
        SearchOptions(encoder_norm=True).validate()


def test_init_encoder_without_an_encoder_or_with_lowres_masks_is_refused(tiny_model,
                                                                          tiny_encoder_run):
    from inpaint.config import SearchOptions
    from inpaint.models import load_model
    from inpaint.search import Completer

    with pytest.raises(InpaintError, match="has none"):
        Completer(tiny_model, SearchOptions(init="encoder"))
    with pytest.raises(InpaintError, match="lowres"):
        Completer(load_model(tiny_encoder_run / "model"), SearchOptions(init="encoder"),
                  lowres=True)
    # auto falls back to random there
    Completer(tiny_model, SearchOptions(init="auto"))
    Completer(load_model(tiny_encoder_run / "model"), SearchOptions(init="auto"), lowres=True)


def test_train_encoder_cli_resumes_and_complete_uses_the_encoder(tiny_run, tmp_path):
    from click.testing import CliRunner

    from inpaint.cli import cli

    from .conftest import write_faces

    data = write_faces(tmp_path / "faces", n=8)
    run = tmp_path / "enc"
    r = CliRunner().invoke(cli, ["train-encoder", "--model", str(tiny_run), "-o", str(run),
                                 "--dataset", str(tmp_path / "nowhere"), "-q"])
    assert r.exit_code == 1 and "nowhere" in r.output and not run.exists()  # nothing left
    args = ["train-encoder", "--model", str(tiny_run), "-o", str(run), "--filters", "4",
            "--batch-size", "8", "--precision", "float32", "-q"]
    r = CliRunner().invoke(cli, args + ["--dataset", str(data), "--steps", "2"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, args + ["--steps", "3"])  # resumes; the dataset is recorded
    assert r.exit_code == 0, r.output
    assert "step 3" in r.output
    r = CliRunner().invoke(cli, args + ["--steps", "3", "--batch-size", "7"])
    assert r.exit_code == 2
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["complete", str(data), "-o", str(out), "--model",
                                 str(run / "model"), "--init", "encoder", "--iters", "2", "-q"])
    assert r.exit_code == 0, r.output
    assert len(list((out / "completed").iterdir())) == 8
    r = CliRunner().invoke(cli, ["complete", str(data), "-o", str(tmp_path / "o2"), "--model",
                                 str(tiny_run), "--init", "encoder", "--iters", "2", "-q"])
    assert r.exit_code != 0 and "has none" in r.output and "Traceback" not in r.output


def test_the_default_iterations_follow_the_start(tiny_encoder_run, tiny_model):
    from inpaint.config import DEFAULT_ITERS, SearchOptions
    from inpaint.models import load_model
    from inpaint.search import Completer

    assert SearchOptions().resolved(True).iters == DEFAULT_ITERS["encoder"] < DEFAULT_ITERS["random"]
    assert SearchOptions(iters=7).resolved(True).iters == 7
    images, masks = faces(2), np.stack([build_mask("center", 16)] * 2)
    with_encoder = Completer(load_model(tiny_encoder_run / "model"),
                             SearchOptions(precision="float32"))
    assert with_encoder.options.iters == DEFAULT_ITERS["encoder"]
    r = with_encoder(images, masks)
    assert r.losses["total"].shape == (DEFAULT_ITERS["encoder"] + 1, 2)
    assert Completer(tiny_model, SearchOptions()).options.iters == DEFAULT_ITERS["random"]


def test_scattered_masks_search_longer_from_the_encoder(tiny_encoder_run, tiny_model, tmp_path):
    """Random and grid masks (known pixels everywhere) get DEFAULT_ITERS["encoder-scattered"]
    from the encoder; holes keep the short search, a random start its own count, and an asked
    count wins. `complete` and `evaluate` pass the mask's kind down, and the run's settings hold
    the count that ran."""
    from click.testing import CliRunner
    from PIL import Image

    from inpaint.cli import cli
    from inpaint.config import DEFAULT_ITERS, SearchOptions
    from inpaint.evaluate import evaluate_mask
    from inpaint.masks import MaskSpec
    from inpaint.models import load_model
    from inpaint.search import Completer, complete

    short, long = DEFAULT_ITERS["encoder"], DEFAULT_ITERS["encoder-scattered"]
    assert short < long
    assert SearchOptions().resolved(True, scattered=True).iters == long
    assert SearchOptions().resolved(False, scattered=True).iters == DEFAULT_ITERS["random"]
    assert SearchOptions(iters=7).resolved(True, scattered=True).iters == 7
    assert [MaskSpec(k).scattered for k in ("random", "grid", "center", "left", "lowres")] == [
        True, True, False, False, False]
    assert not MaskSpec("random", box=(1, 1, 4, 4)).scattered
    assert not MaskSpec("random", file=tmp_path / "m.png").scattered
    assert not MaskSpec("grid", folder=tmp_path).scattered

    model = load_model(tiny_encoder_run / "model")
    opts = SearchOptions(precision="float32")
    assert Completer(model, opts, scattered=True).options.iters == long
    assert Completer(model, opts).options.iters == short
    assert Completer(tiny_model, opts, scattered=True).options.iters == DEFAULT_ITERS["random"]
    r = complete(model.generator, model.discriminator, faces(1), build_mask("random", 16)[None],
                 options=opts, encoder=model.encoder, scattered=True)
    assert r.losses["total"].shape == (long + 1, 1)

    images = faces(2)
    for kind, want in (("random", long), ("center", short)):
        r = evaluate_mask(model, images, ["a", "b"], kind, opts, progress=None)
        assert r["iterations"] == want, kind

    data = tmp_path / "faces"
    data.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(data / f"f{i}.png")
    for kind, want in (("random", long), ("center", short)):
        out = tmp_path / kind
        r = CliRunner().invoke(cli, ["complete", str(data), "-o", str(out), "--model",
                                     str(tiny_encoder_run / "model"), "--mask-type", kind,
                                     "--precision", "float32", "-q"])
        assert r.exit_code == 0, r.output
        settings = json.loads((out / "run.json").read_text())["settings"]
        assert settings["options"]["iters"] == want, kind


def test_a_damaged_encoder_checkpoint_is_skipped_and_set_aside(tiny_encoder_run, tiny_model,
                                                                 tmp_path):
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(tiny_encoder_run / "checkpoints", ckpts)
    (ckpts / "ckpt-0000004" / "encoder.weights.h5").write_bytes(b"not a weights file")
    cfg = EncoderConfig(filters=4, batch_size=8, precision="float32")
    tr = EncoderTrainer(tiny_model.generator, tiny_model.config.model, cfg)
    assert tr.restore_latest(ckpts).name == "ckpt-0000002" and tr.step == 2
    tr.train_step(faces(16))
    tr.save_checkpoint(ckpts, keep=3)
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "ckpt-0000002", "ckpt-0000003", "damaged-ckpt-0000004"]


def test_an_encoder_too_big_for_the_machine_is_refused_before_any_work(tiny_run, tmp_path):
    from click.testing import CliRunner

    from inpaint.cli import cli

    from .conftest import write_faces

    data = write_faces(tmp_path / "faces", n=8)
    r = CliRunner().invoke(cli, ["train-encoder", "--model", str(tiny_run), "-o",
                                 str(tmp_path / "enc"), "--dataset", str(data), "--filters",
                                 "100000", "-q"])
    assert r.exit_code == 1 and r.output.count("Error:") == 1, r.output
    assert "lower --filters" in r.output and "TB" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "enc").exists()  # nothing made


def test_an_out_of_memory_step_is_one_error_naming_the_options(tiny_model, tmp_path, monkeypatch):
    import tensorflow as tf

    from inpaint import encoder
    from inpaint.errors import ResourceError

    from .conftest import write_faces

    def oom(*args, **kw):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(encoder, "_loop", oom)
    cfg = EncoderConfig(filters=4, batch_size=8, steps=1, precision="float32")
    with pytest.raises(ResourceError, match="out of memory at step 0 .* lower --filters"):
        encoder.train_encoder(tiny_model, [write_faces(tmp_path / "f", n=8, size=(16, 16))],
                              tmp_path / "enc", cfg)
    from inpaint.config import ModelConfig

    def size(filters, batch=64):
        return encoder.training_bytes(ModelConfig(), EncoderConfig(filters=filters, batch_size=batch))
    # wide: the weights (filters^2) dominate, so twice the filters is four times the memory
    assert 3.9 < size(20_000) / size(10_000) < 4.0
    # with no batch, what is left is the weights four times over in float32: the network's own count
    assert size(32, batch=0) == 16 * build_encoder(ModelConfig(), 32).count_params()


def test_an_encoder_run_can_start_from_another_models_encoder(tiny_encoder_run, tiny_run,
                                                               tmp_path, monkeypatch):
    from inpaint import encoder
    from inpaint.errors import UsageError
    from inpaint.models import load_model

    from .conftest import write_faces

    start, model = load_model(tiny_encoder_run / "model"), load_model(tiny_run)
    data = [write_faces(tmp_path / "f", n=8)]
    monkeypatch.setattr(encoder, "_loop", lambda *a, **k: {})  # no step: the start is exported
    cfg = EncoderConfig(filters=4, steps=1, batch_size=8, precision="float32")
    res = encoder.train_encoder(model, data, tmp_path / "run", cfg, init_from=start)
    tuned = load_model(res.model_dir).encoder
    for a, b in zip(tuned.get_weights(), start.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)  # float16-stored both: exactly the start's
    settings = json.loads((tmp_path / "run" / "encoder.json").read_text())
    assert settings["init_from"]["path"] == str(start.path)
    with pytest.raises(UsageError, match="give its --filters"):
        encoder.train_encoder(model, data, tmp_path / "run2",
                              EncoderConfig(filters=8, steps=1, batch_size=8), init_from=start)
    with pytest.raises(UsageError, match="no encoder"):
        encoder.train_encoder(model, data, tmp_path / "run3", cfg, init_from=model)
