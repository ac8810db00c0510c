import json

import numpy as np
import pytest

from inpaint import ops
from inpaint.config import Config, apply_overrides
from inpaint.errors import ConfigError, ModelError
from inpaint.models import (
    build_discriminator,
    build_generator,
    cast_networks,
    export_model,
    load_model,
)


def reference_generator_params(z, gf, k, c, n):
    """Trainable parameters of the reference DCGAN generator (biases in every layer, batch-norm
    gamma and beta), written out layer by layer."""
    base = gf * 2 ** (n - 1)
    total = z * 16 * base + 16 * base + 2 * base  # linear, then g_bn0 over the channel axis
    cin = base
    for i in range(1, n + 1):
        cout = c if i == n else base // 2 ** i
        total += k * k * cin * cout + cout
        if i < n:
            total += 2 * cout
        cin = cout
    return total


def reference_discriminator_params(size, df, k, c, n):
    total, cin = 0, c
    for i in range(n):
        cout = df * 2 ** i
        total += k * k * cin * cout + cout + (2 * cout if i > 0 else 0)
        cin = cout
    side = size // 2 ** n
    return total + side * side * cin + 1


def trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_dcgan64_shapes_and_parameter_counts():
    m = Config().model
    g, d = build_generator(m), build_discriminator(m)
    assert g.output_shape == (None, 64, 64, 3) and d.output_shape == (None, 1)
    assert [layer.output.shape[1:] for layer in g.layers if "deconv" in layer.name] == [
        (8, 8, 256), (16, 16, 128), (32, 32, 64), (64, 64, 3)]
    assert trainable(g) == reference_generator_params(100, 64, 5, 3, 4) == 5_135_363
    assert trainable(d) == reference_discriminator_params(64, 64, 5, 3, 4) == 4_316_545


def test_tiny_shapes(tiny_cfg):
    g = build_generator(tiny_cfg.model)
    d = build_discriminator(tiny_cfg.model)
    z = np.random.default_rng(0).uniform(-1, 1, (3, 8)).astype("float32")
    x = g(z, training=False).numpy()
    assert x.shape == (3, 16, 16, 3) and np.abs(x).max() <= 1.0
    assert d(x, training=False).shape == (3, 1)


def test_bfloat16_models_output_float32(tiny_cfg):
    g = build_generator(tiny_cfg.model, "mixed_bfloat16")
    assert g(np.zeros((2, 8), "float32")).dtype.name == "float32"


def test_export_load_round_trip(tmp_path, tiny_cfg):
    g, d = build_generator(tiny_cfg.model), build_discriminator(tiny_cfg.model)
    export_model(tmp_path / "model", g, d, tiny_cfg, step=7)
    loaded = load_model(tmp_path / "model")
    z = np.random.default_rng(1).uniform(-1, 1, (2, 8)).astype("float32")
    np.testing.assert_allclose(loaded.generator(z, training=False).numpy(),
                               g(z, training=False).numpy(), atol=1e-6)
    x = g(z, training=False)
    np.testing.assert_allclose(loaded.discriminator(x, training=False).numpy(),
                               d(x, training=False).numpy(), atol=1e-6)
    assert loaded.config == tiny_cfg and loaded.meta["step"] == 7
    assert load_model(tmp_path).path == tmp_path / "model"  # a run dir holding model/


def test_missing_tampered_and_foreign_models(tmp_path, tiny_cfg):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nothing")
    with pytest.raises(ModelError, match="not a model directory"):
        load_model(tmp_path)
    export_model(tmp_path / "m", build_generator(tiny_cfg.model),
                 build_discriminator(tiny_cfg.model), tiny_cfg)
    cfg_file = tmp_path / "m" / "config.toml"
    cfg_file.write_text(cfg_file.read_text().replace("z_dim = 8", "z_dim = 9"))
    with pytest.raises(ModelError, match="config.toml does not match the checksum"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelError, match="generator maps"):
        load_model(tmp_path / "m", verify=False)
    (tmp_path / "m" / "discriminator.keras").unlink()
    with pytest.raises(ModelError, match="discriminator.keras is missing"):
        load_model(tmp_path / "m")
    meta = tmp_path / "m" / "model.json"
    meta.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not an inpaint model"):
        load_model(tmp_path / "m")


# ----------------------------------------------------------------------------- model options

MODEL_OPTIONS = {
    "deconv-bilinear": ["model.upsample=deconv-bilinear"],
    "resize-conv": ["model.upsample=resize-conv"],
    "deformable": ['model.deformable=["d_conv0", "d_conv1"]'],
    "deformable-bf16": ["model.deformable=d_conv1", "train.precision=mixed_bfloat16"],
}


@pytest.mark.parametrize("overrides", MODEL_OPTIONS.values(), ids=MODEL_OPTIONS)
def test_model_options_train_a_step_and_reload_with_the_same_outputs(tmp_path, tiny_cfg, overrides):
    from inpaint.train import GANTrainer

    cfg = apply_overrides(tiny_cfg, overrides)
    trainer = GANTrainer(cfg)
    g, d = trainer.generator, trainer.discriminator
    before = {v.path: v.numpy().copy() for v in g.trainable_variables + d.trainable_variables}
    real = np.random.default_rng(2).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
    losses = trainer.train_step(real)
    assert all(np.isfinite(v) for v in losses.values())
    new_kinds = [v for v in g.trainable_variables + d.trainable_variables
                 if "offset" in v.path or "g_conv" in v.path or "g_deconv" in v.path]
    assert new_kinds and all(not np.array_equal(v.numpy(), before[v.path]) for v in new_kinds)

    export_model(tmp_path / "model", g, d, cfg, step=1)
    loaded = load_model(tmp_path / "model")
    assert loaded.config == cfg
    z = np.random.default_rng(3).uniform(-1, 1, (2, 8)).astype("float32")
    for a, b in zip(loaded.generator.weights + loaded.discriminator.weights, g.weights + d.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The export stores float32 networks, so the loaded model computes in float32 while a
    # mixed_bfloat16 trainer computes in bfloat16: comparing those would measure bfloat16's
    # rounding, not the round trip. With bit-equal weights, the same networks evaluated in the
    # same precision must give the same numbers: compare in the trainer's precision and in float32.
    policy = "mixed_bfloat16" if cfg.train.precision == "mixed_bfloat16" else "float32"
    for prec in sorted({policy, "float32"}):
        g0, d0 = cast_networks(g, d, prec)
        g1, d1 = cast_networks(loaded.generator, loaded.discriminator, prec)
        x = g0(z, training=False)
        # Same weights, same precision, same kernels: equal up to summation order, i.e. a few
        # float32 ulps, or in bfloat16 at most one rounding of the last op flipped (2^-8 of the
        # value). Measured: bitwise equal with oneDNN and with TensorFlow's own kernels.
        rtol = 2.0**-8 if prec == "mixed_bfloat16" else 1e-5
        np.testing.assert_allclose(g1(z, training=False), x, rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(d1(x, training=False), d0(x, training=False), rtol=rtol,
                                   atol=1e-7)


def test_upsample_modes_keep_the_reference_parameter_count():
    reference = reference_generator_params(100, 64, 5, 3, 4)
    bilinear = build_generator(apply_overrides(Config(), ["model.upsample=deconv-bilinear"]).model)
    resize = build_generator(apply_overrides(Config(), ["model.upsample=resize-conv"]).model)
    assert trainable(bilinear) == trainable(resize) == reference
    assert [layer.name for layer in resize.layers if "g_up" in layer.name or "g_conv" in layer.name
            ] == ["g_up1", "g_conv1", "g_up2", "g_conv2", "g_up3", "g_conv3", "g_up4", "g_conv4"]
    assert resize.output_shape == (None, 64, 64, 3)
    # deconv-bilinear starts as bilinear upsampling, channel o copying channel o
    kernel = bilinear.get_layer("g_deconv2").kernel.numpy()  # (5, 5, 128, 256)
    np.testing.assert_array_equal(kernel, ops.bilinear_kernel(2, 5, 128, 256).numpy())


def test_deformable_discriminator_adds_only_the_offset_convolutions():
    cfg = apply_overrides(Config(), ["model.deformable=d_conv1,d_conv3"])
    d = build_discriminator(cfg.model)
    names = [layer.name for layer in d.layers]
    assert names.index("d_offset1") == names.index("d_conv1") - 1
    assert names.index("d_offset3") == names.index("d_conv3") - 1
    offsets = 3 * 3 * 64 * 128 + 3 * 3 * 256 * 512  # 3x3 convs predicting 2C maps from C
    assert trainable(d) == reference_discriminator_params(64, 64, 5, 3, 4) + offsets


@pytest.mark.parametrize("override, message", [
    ("model.deformable=d_conv2", r"no discriminator convolution 'd_conv2'.*d_conv0, d_conv1$"),
    ("model.deformable=d_conv1,d_conv1", "lists a layer twice"),
    ("model.upsample=pixelshuffle", "model.upsample must be one of deconv, deconv-bilinear"),
])
def test_bad_model_options_are_config_errors(tiny_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(tiny_cfg, [override])


def test_bilinear_deconv_needs_kernels_of_at_least_four_taps(tiny_cfg):
    with pytest.raises(ConfigError, match="kernel_size >= 4"):
        apply_overrides(tiny_cfg, ["model.upsample=deconv-bilinear", "model.kernel_size=3"])
    assert apply_overrides(tiny_cfg, ["model.upsample=deconv-bilinear", "model.kernel_size=4"])


def test_float16_storage_halves_the_files_and_loads_as_float32(tmp_path):
    from inpaint.config import apply_overrides

    cfg = apply_overrides(Config(), ["model.gf=16", "model.df=16"])
    g, d = build_generator(cfg.model), build_discriminator(cfg.model)
    export_model(tmp_path / "full", g, d, cfg)
    export_model(tmp_path / "half", g, d, cfg, storage="float16")
    full = (tmp_path / "full" / "generator.keras").stat().st_size
    half = (tmp_path / "half" / "generator.keras").stat().st_size
    assert half < 0.6 * full
    loaded = load_model(tmp_path / "half")
    assert loaded.meta["storage"] == "float16"
    assert all(w.dtype == "float32" for w in loaded.generator.weights)
    z = np.random.default_rng(0).uniform(-1, 1, (4, 100)).astype("float32")
    np.testing.assert_allclose(loaded.generator(z, training=False).numpy(),
                               g(z, training=False).numpy(), atol=2e-2)


def test_cast_networks_changes_the_compute_precision(tiny_cfg):
    from inpaint.models import cast_networks, network_policy

    g, d = build_generator(tiny_cfg.model, "mixed_bfloat16"), build_discriminator(tiny_cfg.model)
    assert network_policy(g) == "mixed_bfloat16" and network_policy(d) == "float32"
    g32, d32 = cast_networks(g, d, "float32")
    assert network_policy(g32) == "float32" and d32 is d  # already float32: not rebuilt
    for a, b in zip(g.get_weights(), g32.get_weights()):
        np.testing.assert_array_equal(a, b)
    same = cast_networks(g32, d32, "float32")
    assert same[0] is g32 and same[1] is d32


@pytest.mark.parametrize("build", [build_generator, build_discriminator])
def test_weight_files_load_across_keras_and_inpaint_layers(tmp_path, tiny_cfg, monkeypatch,
                                                             build):
    """Checkpoints and weights written by networks of Keras's batch normalization and convolutions
    (every version before inpaint's) load into today's networks, and back: same keys, values."""
    import keras

    from inpaint import layers as ilayers
    from inpaint import models

    ours = build(tiny_cfg.model)
    classes = ("BatchNormalization", "Conv2D", "Conv2DTranspose")
    with monkeypatch.context() as m:
        for name in classes:
            m.setattr(models, name, getattr(keras.layers, name))
        theirs = build(tiny_cfg.model)
    ours_types = {type(la) for la in ours.layers}
    assert ilayers.BatchNormalization in ours_types
    assert ours_types & {ilayers.Conv2D, ilayers.Conv2DTranspose}
    assert not ours_types & {getattr(keras.layers, name) for name in classes}
    assert not {type(la) for la in theirs.layers} & {getattr(ilayers, name) for name in classes}
    rng = np.random.default_rng(5)
    for src, dst in ((theirs, ours), (ours, theirs)):
        src.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in src.get_weights()])
        src.save_weights(tmp_path / "w.weights.h5")
        dst.load_weights(tmp_path / "w.weights.h5")
        for a, b in zip(src.weights, dst.weights, strict=True):
            assert a.path == b.path
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def _randomised_generator(cfg, seed=0):
    """A generator of `cfg` with random weights and batch-norm statistics far from their start,
    so that a widening that dropped or misplaced any of them would show in the outputs."""
    g = build_generator(cfg)
    rng = np.random.default_rng(seed)
    for w in g.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
        elif "gamma" in w.path:
            w.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        else:
            w.assign(rng.normal(0, 0.3, shape).astype("float32"))
    return g


@pytest.mark.parametrize("upsample", ["deconv", "resize-conv"])
def test_widen_generator_computes_the_same_faces_with_more_filters(tiny_cfg, upsample):
    import tensorflow as tf

    from inpaint.models import widen_generator

    cfg = apply_overrides(tiny_cfg, [f"model.upsample={upsample}"]).model
    g = _randomised_generator(cfg)
    wide, wide_cfg = widen_generator(g, cfg, cfg.gf + 5, seed=1)
    assert wide_cfg.gf == cfg.gf + 5 and wide_cfg.z_dim == cfg.z_dim
    assert trainable(wide) == trainable(build_generator(wide_cfg)) > trainable(g)
    z = np.random.default_rng(2).uniform(-1, 1, (8, cfg.z_dim)).astype("float32")
    # The same sums in float32, regrouped: each output differs by a few roundings of values of
    # order one through three layers (measured 1.6e-6 on the 64-px model).
    for training in (False, True):  # moving statistics, then the batch's own moments
        np.testing.assert_allclose(wide(z, training=training), g(z, training=training),
                                   atol=2e-5)
    # The copies of a channel start as twins but get different gradients, so they grow apart.
    first = "g_conv1" if upsample == "resize-conv" else "g_deconv1"
    kernel = wide.get_layer(first).kernel
    out_axis = 3 if upsample == "resize-conv" else 2
    k = np.moveaxis(kernel.numpy(), out_axis, 0)
    twins = [(i, j) for j in range(k.shape[0]) for i in range(j) if np.array_equal(k[i], k[j])]
    assert twins  # 16 -> 26 channels after the first stage: ten copies
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(wide(z, training=True) - 0.3))
    grad = np.moveaxis(tape.gradient(loss, kernel).numpy(), out_axis, 0)
    for i, j in twins:
        assert not np.allclose(grad[i], grad[j], rtol=1e-3, atol=0)


def test_widen_generator_refuses_narrowing(tiny_cfg):
    from inpaint.models import widen_generator

    g = build_generator(tiny_cfg.model)
    for gf in (tiny_cfg.model.gf, tiny_cfg.model.gf - 1, 9.5):
        with pytest.raises(ValueError, match="gf must be an integer above"):
            widen_generator(g, tiny_cfg.model, gf)


def test_widened_model_script_exports_a_model_a_run_can_start_from(tmp_path, tiny_cfg, tiny_run,
                                                                   tiny_model):
    import subprocess
    import sys

    from inpaint.train import GANTrainer

    from .conftest import ROOT

    script = str(ROOT / "scripts" / "widen_generator.py")
    out = tmp_path / "wide"
    done = subprocess.run([sys.executable, script, str(tiny_run), "--gf", "12", "-o", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    wide = load_model(out)
    assert wide.config.model.gf == 12 and "widened from gf 8 to 12" in wide.meta["generator"]
    z = np.random.default_rng(4).uniform(-1, 1, (4, 8)).astype("float32")
    np.testing.assert_allclose(wide.generator(z, training=False),
                               tiny_model.generator(z, training=False), atol=2e-5)
    refused = subprocess.run([sys.executable, script, str(tiny_run), "--gf", "8",
                              "-o", str(tmp_path / "same")], capture_output=True, text=True,
                             timeout=180)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "gf must be an integer above the generator's 8" in refused.stderr
    assert not (tmp_path / "same").exists()

    # What `inpaint train --set model.gf=12 --init-from WIDE` does: it starts where the
    # narrower model was and trains.
    trainer = GANTrainer(apply_overrides(tiny_cfg, ["model.gf=12"]))
    trainer.init_from_model(out)
    np.testing.assert_allclose(trainer.ema_generator(z, training=False),
                               tiny_model.generator(z, training=False), atol=2e-5)
    real = np.random.default_rng(5).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
    assert all(np.isfinite(v) for v in trainer.train_step(real).values())
