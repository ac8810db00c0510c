"""inpaint.layers: the bilinear initializer reproduces bilinear interpolation (and which kind),
ConvOffset2D samples where its offsets say, BatchNormalization's fused kernel computes what Keras's
batch normalization does and shares its weight files, and all survive a safe-mode save and load."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from inpaint import ops
from inpaint.layers import BatchNormalization, BilinearInitializer, ConvOffset2D

KERAS_BN = keras.layers.BatchNormalization


def bilinear_deconv(factor, channels, kernel_size=None):
    k = kernel_size or ops.bilinear_kernel_size(factor)
    return keras.layers.Conv2DTranspose(channels, k, strides=factor, padding="same",
                                        kernel_initializer=BilinearInitializer(factor))


def half_pixel_coords(n, factor):
    """Where output pixel i of an upsampling by `factor` samples the input: (i + 0.5) / f - 0.5,
    the convention of tf.image.resize (align_corners=False)."""
    return (np.arange(n * factor) + 0.5) / factor - 0.5


def align_corners_coords(n, factor):
    """The other convention: the corner pixels of input and output coincide."""
    return np.arange(n * factor) * (n - 1) / (n * factor - 1)


FACTORS = [(2, None), (2, 5), (3, None), (4, None)]  # (2, 5): the generator's 5x5 kernels


@pytest.mark.parametrize("factor, kernel_size", FACTORS)
def test_bilinear_deconv_on_a_ramp_is_half_pixel_bilinear_away_from_the_borders(factor,
                                                                                 kernel_size):
    h, w = 6, 7
    a, b, c = 0.3, -0.7, 2.0
    ramp = a * np.arange(h)[:, None] + b * np.arange(w)[None, :] + c
    out = bilinear_deconv(factor, 1, kernel_size)(ramp[None, :, :, None].astype(np.float32))
    out = out.numpy()[0, :, :, 0]
    m = factor // 2  # output pixels within f // 2 of the border mix in the zeros outside
    inner = (slice(m, -m), slice(m, -m))
    # Bilinear interpolation reproduces a linear function exactly: the known answer.
    expected = (a * half_pixel_coords(h, factor)[:, None] + b * half_pixel_coords(w, factor)[None]
                + c)
    np.testing.assert_allclose(out[inner], expected[inner], atol=1e-5)
    other = (a * align_corners_coords(h, factor)[:, None]
             + b * align_corners_coords(w, factor)[None] + c)
    assert np.abs(out[inner] - other[inner]).max() > 0.1  # not the align-corners convention


@pytest.mark.parametrize("factor, kernel_size", FACTORS)
def test_bilinear_deconv_on_random_images_matches_scipy_away_from_the_borders(factor,
                                                                               kernel_size):
    rng = np.random.default_rng(factor)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    out = bilinear_deconv(factor, 3, kernel_size)(x).numpy()
    grid = np.meshgrid(half_pixel_coords(5, factor), half_pixel_coords(6, factor), indexing="ij")
    ref = np.stack([np.stack([ndimage.map_coordinates(x[i, :, :, k], grid, order=1, mode="nearest")
                              for k in range(3)], axis=-1) for i in range(2)])
    m = factor // 2
    np.testing.assert_allclose(out[:, m:-m, m:-m], ref[:, m:-m, m:-m], atol=1e-5)
    # the border rows differ: the transposed convolution sees zeros outside, scipy the edge
    assert np.abs(out[:, :m] - ref[:, :m]).max() > 1e-2


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("size", [(5, 5), (6, 7)])
def test_bilinear_deconv_output_shapes_for_odd_and_even_sizes(factor, size):
    layer = bilinear_deconv(factor, 2)
    out = layer(np.zeros((1,) + size + (2,), np.float32))
    assert out.shape == (1, size[0] * factor, size[1] * factor, 2)
    assert layer.kernel.shape == (ops.bilinear_kernel_size(factor),) * 2 + (2, 2)


def test_bilinear_initializer_config_and_bad_shapes():
    init = BilinearInitializer.from_config(BilinearInitializer(3).get_config())
    assert init.factor == 3
    np.testing.assert_array_equal(init((5, 5, 2, 4)), ops.bilinear_kernel(3, 5, 2, 4))
    with pytest.raises(ValueError, match="square"):
        init((5, 4, 2, 2))
    with pytest.raises(ValueError, match="too small"):
        BilinearInitializer(2)((3, 3, 1, 1))


# ----------------------------------------------------------------------------- ConvOffset2D


def test_conv_offset_samples_where_the_predicted_offsets_point():
    """A kernel whose centre tap copies the input into dx (and nothing into dy): pixels holding 1
    read their right neighbour, pixels holding 0 read themselves. Checks the (dy, dx) order."""
    x = np.array([[0, 1, 0, 0],
                  [1, 1, 0, 1],
                  [0, 0, 1, 0]], np.float32)
    x = np.stack([x, 1 - x], axis=-1)[None]  # two channels: (1, 3, 4, 2)
    layer = ConvOffset2D()
    layer.build(x.shape)
    kernel = np.zeros((3, 3, 2, 4), np.float32)
    kernel[1, 1, 0, 1] = 1.0  # channel 0's dx = channel 0
    kernel[1, 1, 1, 2] = 2.0  # channel 1's dy = 2 * channel 1
    layer.kernel.assign(kernel)
    out = layer(x).numpy()[0]
    c0 = x[0, :, :, 0]
    expected0 = np.where(c0 == 1, c0[:, np.minimum(np.arange(4) + 1, 3)], c0)
    c1 = x[0, :, :, 1]
    expected1 = np.where(c1 == 1, c1[np.minimum(np.arange(3) + 2, 2)][:, :], c1)
    np.testing.assert_array_equal(out[:, :, 0], expected0)
    np.testing.assert_array_equal(out[:, :, 1], expected1)
    assert not np.array_equal(expected0, c0) and not np.array_equal(expected1, c1)


def test_conv_offset_starts_close_to_the_identity():
    """Offsets start as sums of 3 * 3 * C products of N(0, 0.01^2) weights and unit inputs:
    std 0.01 * sqrt(36) = 0.06 of a pixel, so the output moves a small fraction of the difference
    between neighbouring pixels."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype(np.float32)
    layer = ConvOffset2D()
    out = layer(x).numpy()
    assert layer.kernel.shape == (3, 3, 4, 8) and len(layer.trainable_weights) == 1
    assert 0.03 < layer.offsets(x).numpy().std() < 0.1
    assert np.abs(out - x).mean() < 0.15 * np.abs(np.diff(x, axis=2)).mean()
    layer.kernel.assign(np.zeros((3, 3, 4, 8), np.float32))
    np.testing.assert_array_equal(layer(x), x)


def test_conv_offset_kernel_receives_gradients():
    x = tf.constant(np.random.default_rng(1).normal(size=(1, 6, 6, 2)).astype(np.float32))
    layer = ConvOffset2D()
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.square(layer(x)[:, 1:-1, 1:-1]))
    g = tape.gradient(y, layer.trainable_weights)[0]
    assert g.shape == (3, 3, 2, 4) and np.abs(g.numpy()).max() > 1e-3


def test_conv_offset_in_mixed_bfloat16_samples_in_bfloat16_with_float32_positions():
    x = np.random.default_rng(2).normal(size=(1, 5, 5, 3)).astype(np.float32)
    layer = ConvOffset2D(dtype="mixed_bfloat16")
    y = layer(x)
    assert y.dtype == tf.bfloat16 and layer.kernel.dtype == "float32"
    layer.kernel.assign(np.zeros((3, 3, 3, 6), np.float32))
    np.testing.assert_array_equal(layer(x).numpy(), tf.cast(x, tf.bfloat16).numpy())


def test_layers_save_and_load_in_safe_mode(tmp_path):
    inp = keras.Input((6, 6, 3))
    x = ConvOffset2D(init_stddev=0.5, name="offset")(inp)  # large offsets: a visible effect
    x = bilinear_deconv(2, 3, 5)(x)
    model = keras.Model(inp, x)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("offset"), ConvOffset2D)
    assert loaded.get_layer("offset").init_stddev == 0.5
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert np.abs(model.layers[1](x).numpy() - x).max() > 0.1


def _bn_pair(policy):
    ours = BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=policy)
    keras_bn = KERAS_BN(momentum=0.9, epsilon=1e-5, dtype=policy)
    shape = (8, 6, 6, 16)
    ours.build(shape)
    keras_bn.build(shape)
    rng = np.random.default_rng(7)
    weights = [rng.uniform(0.5, 1.5, 16), rng.normal(size=16), rng.normal(size=16),
               rng.uniform(0.5, 2.0, 16)]  # gamma, beta, moving mean and variance
    for layer in (ours, keras_bn):
        layer.set_weights([w.astype(np.float32) for w in weights])
    x = (rng.normal(size=shape) * 3 + 1).astype(np.float32)
    w = rng.normal(size=shape).astype(np.float32)  # a loss sum(w * y) with a gradient per element
    return ours, keras_bn, x, w


def _forward_backward(layer, x, w):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * w)
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    return [y.numpy().astype(np.float32)] + [g.numpy().astype(np.float32) for g in grads]


def test_fused_batch_norm_trains_as_keras_batch_norm_in_float32():
    ours, keras_bn, x, w = _bn_pair("float32")
    for _ in range(2):  # twice: the moving statistics update from their updated values
        got, want = _forward_backward(ours, x, w), _forward_backward(keras_bn, x, w)
        for name, a, b in zip(("y", "dx", "dgamma", "dbeta"), got, want):
            # float32 sums over the 288 values of a channel in another order: ~1e-6 relative
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
        for a, b in zip(ours.non_trainable_weights, keras_bn.non_trainable_weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    # the moving statistics moved, with the biased batch variance (Keras's, not Bessel's)
    moved = x.reshape(-1, 16)
    mv0 = _bn_pair("float32")[0].moving_variance.numpy()
    want_var = 0.9 * (0.9 * mv0 + 0.1 * moved.var(axis=0)) + 0.1 * moved.var(axis=0)
    np.testing.assert_allclose(ours.moving_variance.numpy(), want_var, rtol=1e-5)
    # inference uses the moving statistics, as Keras's layer does
    np.testing.assert_allclose(ours(x, training=False), keras_bn(x, training=False), atol=1e-5)


def test_fused_batch_norm_in_mixed_bfloat16_keeps_float32_statistics():
    ours, keras_bn, x, w = _bn_pair("mixed_bfloat16")
    got, want = _forward_backward(ours, x, w), _forward_backward(keras_bn, x, w)
    assert _bn_pair("mixed_bfloat16")[0](tf.constant(x), training=True).dtype == tf.bfloat16
    # both compute in float32 and round y to bfloat16 (8 significant bits): at most one step of
    # 2^-7 relative apart where the float32 values straddle a rounding boundary
    np.testing.assert_allclose(got[0], want[0], rtol=2 ** -7, atol=2 ** -7)
    for a, b in zip(ours.non_trainable_weights, keras_bn.non_trainable_weights):
        assert a.dtype == "float32"
        # the statistics are float32 of the bfloat16 input both layers see
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), got[1:], want[1:]):
        # dx leaves in bfloat16 (relative 2^-8 each); dgamma, dbeta sum bfloat16-rounded y
        scale = np.abs(b).max()
        np.testing.assert_allclose(a, b, atol=2 ** -6 * scale, err_msg=name)


def test_fused_batch_norm_leaves_other_cases_to_keras():
    bn = BatchNormalization()
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)  # rank 2: Keras's path
    np.testing.assert_allclose(bn(x, training=True), KERAS_BN()(
        x, training=True), atol=1e-5)
    sync = BatchNormalization(synchronized=True)
    assert not sync._fused(tf.zeros((2, 3, 3, 4)), True, None)
    assert BatchNormalization()._fused(tf.zeros((2, 3, 3, 4)), True, None)
    assert not BatchNormalization()._fused(tf.zeros((2, 3, 3, 4)), False, None)


def test_batch_norm_saves_and_loads_in_safe_mode(tmp_path):
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, BatchNormalization(momentum=0.8, name="bn")(inp))
    model.get_layer("bn").set_weights([np.full(3, 2.0, np.float32), np.ones(3, np.float32),
                                       np.zeros(3, np.float32), np.full(3, 4.0, np.float32)])
    model.save(tmp_path / "bn.keras")
    loaded = keras.saving.load_model(tmp_path / "bn.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("bn"), BatchNormalization)
    assert loaded.get_layer("bn").momentum == pytest.approx(0.8)
    x = np.ones((1, 4, 4, 3), np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    np.testing.assert_allclose(model(x), 1 + 2 / np.sqrt(4 + 1e-3), rtol=1e-6)  # eps 1e-3


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_convolution_layers_train_as_keras_layers(transpose, policy):
    """inpaint's Conv2D and Conv2DTranspose on a 4x4 map (their matmul weight gradient) give
    Keras's layers' outputs and gradients for the same weights, bias included."""
    from inpaint.layers import Conv2D, Conv2DTranspose
    ours_cls, keras_cls = ((Conv2DTranspose, keras.layers.Conv2DTranspose) if transpose
                           else (Conv2D, keras.layers.Conv2D))
    kw = dict(filters=8, kernel_size=5, strides=2, padding="same", dtype=policy)
    ours, theirs = ours_cls(**kw), keras_cls(**kw)
    shape = (4, 4, 4, 16)
    ours.build(shape)
    theirs.build(shape)
    rng = np.random.default_rng(2)
    weights = [rng.normal(size=v.shape).astype(np.float32) * 0.1 for v in theirs.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=theirs.compute_output_shape(shape)).astype(np.float32)
    got, want = _forward_backward(ours, x, w), _forward_backward(theirs, x, w)
    tol = 1e-5 if policy == "float32" else 2 ** -7
    for name, a, b in zip(("y", "dx", "dkernel", "dbias"), got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=tol * np.abs(b).max(), err_msg=name)


def test_patches_weight_gradient_is_used_on_the_dcgan64s_4x4_maps_only():
    from inpaint.config import Config
    from inpaint.layers import _patches_gradient_applies, _positions
    from inpaint.models import build_discriminator, build_generator

    cfg = Config().model
    used = []
    for net in (build_generator(cfg), build_discriminator(cfg)):
        for layer in net.layers:
            if isinstance(layer, keras.layers.Conv2DTranspose):
                h, w = layer.input.shape[1:3]
                used += [layer.name] if _patches_gradient_applies(layer, _positions(h, w)) else []
            elif isinstance(layer, keras.layers.Conv2D):
                h, w = layer.input.shape[1:3]
                pos = _positions(h, w, layer.strides[0])
                used += [layer.name] if _patches_gradient_applies(layer, pos) else []
    assert used == ["g_deconv1", "d_conv3"]
