"""inpaint.ops against references: scipy's map_coordinates for sampling, finite differences for
gradients, numbers worked out by hand for the kernels."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from inpaint import ops


def scipy_sample_offsets(features, offsets):
    """Reference for ops.sample_offsets: map_coordinates(order=1) per image and channel at the
    clipped positions (y + dy, x + dx)."""
    b, h, w, c = features.shape
    out = np.zeros_like(features, dtype=np.float64)
    for i in range(b):
        for k in range(c):
            ys = np.clip(np.arange(h)[:, None] + offsets[i, :, :, k, 0], 0, h - 1)
            xs = np.clip(np.arange(w)[None, :] + offsets[i, :, :, k, 1], 0, w - 1)
            out[i, :, :, k] = ndimage.map_coordinates(features[i, :, :, k].astype(np.float64),
                                                      [ys, xs], order=1)
    return out


def smooth_images(rng, b, h, w, c):
    """Random images without sharp steps: bilinear resizes of 4x4 noise, float64."""
    low = rng.normal(size=(b, 4, 4, c))
    return tf.image.resize(low, (h, w), method="bilinear").numpy().astype(np.float64)


# ----------------------------------------------------------------------------- bilinear kernels


@pytest.mark.parametrize("factor, taps", [
    (2, [1 / 4, 3 / 4, 3 / 4, 1 / 4]),
    (3, [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3]),
    (4, [1 / 8, 3 / 8, 5 / 8, 7 / 8, 7 / 8, 5 / 8, 3 / 8, 1 / 8]),
])
def test_bilinear_kernel_weights_are_the_fcn_formula(factor, taps):
    k = ops.bilinear_kernel(factor, channels_out=2, channels_in=3).numpy()
    assert k.shape == (len(taps), len(taps), 2, 3) == (ops.bilinear_kernel_size(factor),) * 2 + (2, 3)
    np.testing.assert_allclose(k[:, :, 1, 1], np.outer(taps, taps), atol=1e-7)
    np.testing.assert_array_equal(k[:, :, 0, 1], 0)  # nothing between different channels
    np.testing.assert_array_equal(k[:, :, 1, 2], 0)


def test_larger_bilinear_kernel_pads_the_taps_where_same_padding_needs_them():
    # 5x5 at stride 2: TF pads (5 - 2) // 2 = 1 before, as for 4x4, so the fifth tap is zero.
    k5, k4 = ops.bilinear_kernel(2, 5).numpy(), ops.bilinear_kernel(2).numpy()
    np.testing.assert_array_equal(k5[:4, :4], k4)
    assert not k5[4].any() and not k5[:, 4].any()
    with pytest.raises(ValueError, match="too small"):
        ops.bilinear_kernel(2, 3)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bilinear_transposed_conv_is_half_pixel_bilinear_with_zeros_outside(factor):
    """On the whole map, borders included: the transposed convolution sees zeros beyond the input,
    so it equals half-pixel bilinear interpolation of the zero-extended image."""
    x = np.random.default_rng(factor).normal(size=(1, 5, 6, 1)).astype(np.float32)
    y = tf.nn.conv2d_transpose(x, ops.bilinear_kernel(factor), (1, 5 * factor, 6 * factor, 1),
                               factor, "SAME").numpy()[0, :, :, 0]
    ys = (np.arange(5 * factor) + 0.5) / factor - 0.5
    xs = (np.arange(6 * factor) + 0.5) / factor - 0.5
    grid = np.meshgrid(ys, xs, indexing="ij")
    ref = ndimage.map_coordinates(x[0, :, :, 0], grid, order=1, mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(y, ref, atol=1e-5)


# ----------------------------------------------------------------------------- offset sampling


@pytest.mark.parametrize("shape", [(2, 6, 6, 3), (2, 5, 9, 4), (1, 7, 3, 1)])
def test_sample_offsets_matches_scipy_map_coordinates(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape).astype(np.float32)
    off = rng.uniform(-3, 3, size=shape + (2,)).astype(np.float32)  # many fall outside: clipped
    out = ops.sample_offsets(x, off).numpy()
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, scipy_sample_offsets(x, off), atol=1e-5)


def test_sample_offsets_with_zero_offsets_is_exactly_the_input():
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32) * 100
    np.testing.assert_array_equal(ops.sample_offsets(x, np.zeros(x.shape + (2,), np.float32)), x)


def test_sample_offsets_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    shape = (2, 4, 5, 2)
    x = rng.normal(size=shape)
    # Positions whose fractional parts stay in [0.2, 0.8] and inside the map: away from the kinks
    # of bilinear interpolation (whole pixels) and of clipping, where no derivative exists.
    iy = np.arange(4)[None, :, None, None]
    ix = np.arange(5)[None, None, :, None]
    py = rng.integers(0, 3, shape) + rng.uniform(0.2, 0.8, shape)
    px = rng.integers(0, 4, shape) + rng.uniform(0.2, 0.8, shape)
    off = np.stack([py - iy, px - ix], axis=-1)
    theoretical, numerical = tf.test.compute_gradient(tf.function(ops.sample_offsets), [x, off],
                                                      delta=1e-4)
    for t, n in zip(theoretical, numerical):
        assert np.abs(n).max() > 0.1
        np.testing.assert_allclose(t, n, atol=1e-6)


def test_sample_offsets_gradient_is_zero_where_positions_are_clipped():
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 3, 3, 1)))
    off = tf.fill((1, 3, 3, 1, 2), tf.constant(-5.5, tf.float64))  # all beyond the top-left
    with tf.GradientTape() as tape:
        tape.watch(off)
        y = tf.reduce_sum(ops.sample_offsets(x, off))
    np.testing.assert_array_equal(tape.gradient(y, off), 0)
    np.testing.assert_array_equal(y, 9 * x[0, 0, 0, 0])


# ----------------------------------------------------------------------------- translation


def edge_shift(img, dy, dx):
    """numpy reference for a whole-pixel translation: out[y, x] = img[clip(y - dy), clip(x - dx)]."""
    h, w = img.shape[:2]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[rows][:, cols]


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_positive_shift_moves_content_down_and_right(interpolation):
    x = np.random.default_rng(3).normal(size=(2, 6, 8, 3)).astype(np.float32)
    shifts = np.array([[2, -3], [-1, 5]], np.float32)
    out = ops.translate(x, shifts, interpolation).numpy()
    np.testing.assert_array_equal(out[0], edge_shift(x[0], 2, -3))
    np.testing.assert_array_equal(out[1], edge_shift(x[1], -1, 5))
    np.testing.assert_array_equal(out[0, 2:, :5], x[0, :-2, 3:])


def test_bilinear_translate_matches_map_coordinates_at_subpixel_shifts():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 7, 9, 2)).astype(np.float32)
    shifts = np.array([[0.3, -1.75], [2.5, 0.6]], np.float32)
    offsets = np.broadcast_to(-shifts[:, None, None, None, :], x.shape + (2,))
    np.testing.assert_allclose(ops.translate(x, shifts, "bilinear"),
                               scipy_sample_offsets(x, offsets), atol=1e-5)


def test_nearest_translate_rounds_the_shift():
    x = np.random.default_rng(5).normal(size=(1, 6, 6, 1)).astype(np.float32)
    for shift, whole in (([0.4, -0.4], [0, 0]), ([0.6, -1.6], [1, -2])):
        np.testing.assert_array_equal(ops.translate(x, [shift], "nearest"),
                                      ops.translate(x, [whole], "nearest"))


def test_nearest_translate_custom_gradient_matches_finite_differences_of_bilinear():
    """With shift s = n + a, 0 < a < 1, bilinear translation is linear in a and its derivative is
    minus the backward difference of the image; with -1 < a < 0 minus the forward difference. Their
    mean is minus the central difference: the nearest-neighbour custom gradient at the whole shift
    n, exactly, wherever the loss does not look at pixels fed from the clipped border."""
    rng = np.random.default_rng(6)
    b, h, w, c = 2, 12, 14, 3
    x = smooth_images(rng, b, h, w, c)
    weights = rng.normal(size=(b, h, w, c))
    weights[:, :4] = weights[:, -4:] = weights[:, :, :4] = weights[:, :, -4:] = 0
    whole = np.array([[2.0, -1.0], [-1.0, 3.0]])

    def loss(images, shifts, interpolation):
        return tf.reduce_sum(weights * ops.translate(images, shifts, interpolation), axis=[1, 2, 3])

    shifts = tf.constant(whole)
    with tf.GradientTape() as tape:
        tape.watch(shifts)
        per_image = loss(x, shifts, "nearest")
    custom = tape.gradient(per_image, shifts).numpy()

    def fd_bilinear(axis, offset, eps=1e-4):
        """Central finite difference along one axis of the shift, at the whole shifts moved by
        `offset` along that axis only (the other stays whole, where bilinear is exact)."""
        at = whole.copy()
        at[:, axis] += offset
        step = np.zeros_like(at)
        step[:, axis] = eps
        return (loss(x, at + step, "bilinear") - loss(x, at - step, "bilinear")) / (2 * eps)

    reference = np.stack([(fd_bilinear(axis, 0.3) + fd_bilinear(axis, -0.3)) / 2
                          for axis in range(2)], axis=-1)
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(custom, reference, atol=1e-6)


def test_nearest_translate_passes_the_exact_gradient_to_the_images():
    x = tf.constant(np.random.default_rng(7).normal(size=(1, 5, 6, 1)))
    weights = np.random.default_rng(8).normal(size=(1, 5, 6, 1))
    for shift in ([0.0, 0.0], [1.0, -2.0]):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(weights * ops.translate(x, [shift], "nearest"))
        g = tape.gradient(y, x).numpy()
        if shift == [0.0, 0.0]:
            np.testing.assert_array_equal(g, weights)
        # every output pixel reads exactly one input pixel, so the weights are only moved
        np.testing.assert_allclose(g.sum(), weights.sum(), atol=1e-12)
    # shifted down 1, left 2: input (y, x) feeds output (y + 1, x - 2) away from the clipped edges
    np.testing.assert_allclose(g[0, 1:3, 3:5], weights[0, 2:4, 1:3])


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_translate_inside_tf_function_gives_the_eager_gradients(interpolation):
    x = smooth_images(np.random.default_rng(9), 3, 8, 10, 3).astype(np.float32)
    shifts = tf.constant([[0.7, -1.2], [2.2, 0.4], [-0.6, 1.9]])

    def grads(images, s):
        with tf.GradientTape() as tape:
            tape.watch([images, s])
            y = tf.reduce_sum(tf.square(ops.translate(images, s, interpolation)))
        return tape.gradient(y, [images, s])

    graph = tf.function(grads, input_signature=[tf.TensorSpec([None, None, None, 3]),
                                                tf.TensorSpec([None, 2])])
    eager = grads(tf.constant(x), shifts)
    compiled = graph(tf.constant(x), shifts)
    for e, g in zip(eager, compiled):
        assert np.abs(e.numpy()).max() > 0
        np.testing.assert_allclose(g, e, atol=1e-5)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_gradient_descent_on_the_shift_moves_the_blob_peak_onto_the_centre(interpolation):
    """The classic check: maximise the centre pixel of a translated blob with plain gradient
    descent on the shift. The blob 1/(1+x^2) * 1/(1+y^2) (x, y in units of 8 pixels) has heavy
    tails, so the centre pixel feels the peak 18 columns and 12 rows away."""
    h, w = 75, 100
    peak, centre = np.array([25, 68]), np.array([h // 2, w // 2])
    yy, xx = np.mgrid[0:h, 0:w]
    blob = 1 / (1 + ((xx - peak[1]) / 8) ** 2) / (1 + ((yy - peak[0]) / 8) ** 2)
    blob = tf.constant(blob[None, :, :, None], tf.float32)
    shift = tf.Variable(tf.zeros((1, 2)))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = -ops.translate(blob, shift, interpolation)[0, centre[0], centre[1], 0]
        shift.assign_sub(20.0 * tape.gradient(loss, shift))

    for _ in range(150):
        step()
    out = ops.translate(blob, shift, interpolation).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(np.unravel_index(out.argmax(), out.shape), centre)
    np.testing.assert_array_equal(np.round(shift.numpy()[0]), centre - peak)
    assert out[centre[0], centre[1]] > 0.99


def test_translate_rejects_unknown_interpolation():
    with pytest.raises(ValueError, match="nearest, bilinear"):
        ops.translate(np.zeros((1, 4, 4, 1), np.float32), [[0.0, 0.0]], "bicubic")


# ------------------------------------------------- convolutions with a matmul weight gradient

def _grads(fn, x, w, dy):
    x, w = tf.constant(x), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = fn(x, w)
    return [y] + tape.gradient(y, [x, w], output_gradients=tf.constant(dy))


def _conv_case(transpose, hw, c_in, c_out, stride, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, hw, hw, c_in))
    w = rng.normal(size=(5, 5, c_out, c_in) if transpose else (5, 5, c_in, c_out)) * 0.1
    if transpose:
        shape = (3, hw * stride, hw * stride, c_out)
        ours = lambda x, w: ops.conv2d_transpose(x, w, shape, stride)  # noqa: E731
        theirs = lambda x, w: tf.nn.conv2d_transpose(x, w, shape, stride, "SAME")  # noqa: E731
    else:
        shape = (3, -(-hw // stride), -(-hw // stride), c_out)
        ours = lambda x, w: ops.conv2d(x, w, stride)  # noqa: E731
        theirs = lambda x, w: tf.nn.conv2d(x, w, stride, "SAME")  # noqa: E731
    dy = rng.normal(size=shape)
    return (ours, theirs) + tuple(tf.cast(a, dtype).numpy() for a in (x, w, dy))


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("hw,stride", [(4, 2), (5, 2), (3, 1), (8, 2)])
def test_convolutions_with_a_patches_weight_gradient_give_tensorflows_gradients(
        transpose, hw, stride):
    """Same output, input gradient and weight gradient as TensorFlow's, for even and odd maps
    ('same' padding puts the extra row after), strided or not; float32 sums of at most 3 * 64 *
    25 * 6 products in another order: relative 1e-5 of the largest value is ample."""
    ours, theirs, x, w, dy = _conv_case(transpose, hw, 6, 4, stride, tf.float32)
    for name, a, b in zip(("y", "dx", "dw"), _grads(ours, x, w, dy), _grads(theirs, x, w, dy)):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max(), err_msg=name)
    # traced with an unknown batch, as inside the training step
    sig = [tf.TensorSpec((None,) + x.shape[1:]), tf.TensorSpec(w.shape)]
    traced = tf.function(lambda x, w: ours(x, w), input_signature=sig)
    want = theirs(x, w).numpy()
    np.testing.assert_allclose(traced(x, w), want, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("transpose", [False, True])
def test_patches_weight_gradient_in_bfloat16_matches_tensorflows(transpose):
    """Both accumulate bfloat16 products in float32 and round the result to bfloat16 (2^-8
    relative): one rounding step of the largest value apart at most."""
    ours, theirs, x, w, dy = _conv_case(transpose, 4, 32, 16, 2, tf.bfloat16, seed=1)
    x, w, dy = (tf.constant(a, tf.bfloat16) for a in (x, w, dy))
    got, want = _grads(ours, x, w, dy), _grads(theirs, x, w, dy)
    assert got[2].dtype == tf.bfloat16
    for name, a, b in zip(("y", "dx", "dw"), got, want):
        a, b = (np.asarray(tf.cast(t, tf.float32)) for t in (a, b))
        np.testing.assert_allclose(a, b, atol=2 ** -7 * np.abs(b).max(), err_msg=name)
