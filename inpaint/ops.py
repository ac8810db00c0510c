"""Pure TensorFlow building blocks: bilinear upsampling kernels, sampling at per-pixel offsets
(deformable convolution) and image translation with a gradient for the shift.

Every function takes and returns tensors, works eagerly and inside `tf.function` with unknown batch
size, and is differentiable where its docstring says so. The Keras layers over them are in
`inpaint.layers`.

Coordinates are in pixels, row first: (y, x) = (0, 0) is the centre of the top-left pixel and
(H - 1, W - 1) the centre of the bottom-right one. Samples outside the map are clipped to it (the
edge pixels are repeated).
"""

from __future__ import annotations

import tensorflow as tf

INTERPOLATIONS = ("nearest", "bilinear")


# ----------------------------------------------------------------------------- upsampling kernels


def bilinear_kernel_size(factor: int) -> int:
    """The smallest transposed-convolution kernel that upsamples bilinearly by `factor`: 2f - f mod 2
    (4 for 2, 5 for 3, 8 for 4)."""
    return 2 * factor - factor % 2


def bilinear_kernel(factor: int, kernel_size: int | None = None, channels_out: int = 1,
                    channels_in: int | None = None, dtype: tf.DType | str = tf.float32) -> tf.Tensor:
    """Kernel (k, k, channels_out, channels_in) that makes a stride-`factor` transposed convolution
    with 'same' padding (`tf.nn.conv2d_transpose`, `keras.layers.Conv2DTranspose`) compute exact
    bilinear upsampling of each channel, as in FCN (Long et al. 2015).

    Weight at tap (i, j): (1 - |i - c| / f) * (1 - |j - c| / f), clipped at 0; between different
    channels 0 (an identity across channels: output channel o copies input channel o, so with
    fewer outputs than inputs the extra inputs are dropped, with more the extra outputs are 0).

    The centre c follows from where 'same' padding puts the kernel: TensorFlow pads
    (k - f) // 2 before, so c = (k - f) // 2 + (f - 1) / 2. For the minimal size k = 2f - f mod 2
    this is f - 1 (odd f) or f - 0.5 (even f); larger kernels (the generator's 5x5 at f = 2) get
    the same weights with zero taps around them.

    The result is half-pixel ("align_corners=False") bilinear interpolation: output pixel i samples
    the input at (i + 0.5) / f - 0.5, the convention of `tf.image.resize`. Outside the input the
    transposed convolution sees zeros, so the first and last f // 2 output rows and columns are
    darker than an edge-clamped resize.

    Raises ValueError if `factor` < 1 or `kernel_size` is smaller than 2f - f mod 2."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    k = bilinear_kernel_size(factor) if kernel_size is None else int(kernel_size)
    if k < bilinear_kernel_size(factor):
        raise ValueError(f"a {k}x{k} kernel is too small for bilinear upsampling by {factor}; "
                         f"it needs at least {bilinear_kernel_size(factor)}")
    channels_in = channels_out if channels_in is None else channels_in
    centre = (k - factor) // 2 + (factor - 1) / 2
    taps = tf.range(k, dtype=tf.float64)
    w = tf.maximum(0.0, 1.0 - tf.abs(taps - centre) / factor)  # (k,)
    w2 = w[:, None] * w[None, :]  # (k, k)
    eye = tf.eye(channels_out, channels_in, dtype=tf.float64)
    return tf.cast(w2[:, :, None, None] * eye[None, None], dtype)


# ----------------------------------------------------------------------------- offset sampling


def _coordinate_dtype(dtype: tf.DType) -> tf.DType:
    # Positions need float32 or better: bfloat16 cannot even hold pixel 257 exactly.
    return tf.float64 if dtype == tf.float64 else tf.float32


def sample_offsets(features: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """Resample every channel of every pixel at its own fractional offset (the sampling step of
    deformable convolution, Dai et al. 2017, with one offset per channel as in ConvOffset2D of
    Jeon & Kim 2017).

    features: (B, H, W, C) float; offsets: (B, H, W, C, 2) float, (dy, dx) in pixels.
    Returns (B, H, W, C) in the dtype of `features`:
        out[b, y, x, c] = bilinear(features[b, :, :, c], clip(y + dy, 0, H - 1), clip(x + dx, 0, W - 1))
    where dy, dx = offsets[b, y, x, c]. Zero offsets give `features` back exactly.

    Differentiable in `features` and in `offsets` (the offset gradient is the one-sided slope of
    the bilinear surface; zero where a coordinate was clipped). Positions are computed in float32
    (float64 for float64 features) whatever the features' dtype. Flat indices are int32, so
    B*H*W*C must stay below 2^31."""
    features = tf.convert_to_tensor(features)
    cdtype = _coordinate_dtype(features.dtype)
    offsets = tf.cast(offsets, cdtype)
    shape = tf.shape(features)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]

    y = tf.cast(tf.range(h), cdtype)[None, :, None, None] + offsets[..., 0]  # (B, H, W, C)
    x = tf.cast(tf.range(w), cdtype)[None, None, :, None] + offsets[..., 1]
    y = tf.clip_by_value(y, 0.0, tf.cast(h - 1, cdtype))
    x = tf.clip_by_value(x, 0.0, tf.cast(w - 1, cdtype))
    y0f, x0f = tf.floor(y), tf.floor(x)
    wy = tf.cast(y - y0f, features.dtype)
    wx = tf.cast(x - x0f, features.dtype)
    y0, x0 = tf.cast(y0f, tf.int32), tf.cast(x0f, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, h - 1), tf.minimum(x0 + 1, w - 1)

    # Index into the flattened NHWC tensor: ((b * H + y) * W + x) * C + c.
    flat = tf.reshape(features, [-1])
    base_b = tf.range(b)[:, None, None, None] * (h * w * c)
    base_c = tf.range(c)[None, None, None, :]

    def at(yi, xi):
        return tf.gather(flat, base_b + (yi * w + xi) * c + base_c)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


# ----------------------------------------------------------------------------- translation


def _source_positions(n: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """(B, n) source coordinates p - shift of output pixels p = 0..n-1, clipped to [0, n - 1]."""
    p = tf.cast(tf.range(n), shift.dtype)[None, :] - shift[:, None]
    return tf.clip_by_value(p, 0.0, tf.cast(n - 1, shift.dtype))


def _gather_rows_cols(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """images[b, rows[b, i], cols[b, j]]: images (B, H, W, C), rows (B, H), cols (B, W) int32."""
    out = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def _lerp_axis(images: tf.Tensor, pos: tf.Tensor, axis: int) -> tf.Tensor:
    """Linear interpolation of `images` along `axis` (1 rows, 2 columns) at positions
    pos (B, n) already clipped to the axis."""
    n = tf.shape(images)[axis]
    p0f = tf.floor(pos)
    wgt = tf.cast(pos - p0f, images.dtype)
    p0 = tf.cast(p0f, tf.int32)
    p1 = tf.minimum(p0 + 1, n - 1)
    a = tf.gather(images, p0, axis=axis, batch_dims=1)
    b = tf.gather(images, p1, axis=axis, batch_dims=1)
    wgt = wgt[:, :, None, None] if axis == 1 else wgt[:, None, :, None]
    return a * (1 - wgt) + b * wgt


def central_differences(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(d/dy, d/dx) of images (B, H, W, C), each (B, H, W, C): central differences inside,
    one-sided at the borders (what `numpy.gradient` computes). Needs H, W >= 2."""
    def along(x, axis):
        first = tf.gather(x, [1], axis=axis) - tf.gather(x, [0], axis=axis)
        n = tf.shape(x)[axis]
        last = tf.gather(x, [n - 1], axis=axis) - tf.gather(x, [n - 2], axis=axis)
        inner = (tf.gather(x, tf.range(2, n), axis=axis)
                 - tf.gather(x, tf.range(0, n - 2), axis=axis)) / 2
        return tf.concat([first, inner, last], axis=axis)

    return along(images, 1), along(images, 2)


@tf.custom_gradient
def _translate_nearest(images, shifts):
    shape = tf.shape(images)
    cdtype = _coordinate_dtype(images.dtype)
    s = tf.cast(shifts, cdtype)
    rows = tf.cast(tf.floor(_source_positions(shape[1], s[:, 0]) + 0.5), tf.int32)
    cols = tf.cast(tf.floor(_source_positions(shape[2], s[:, 1]) + 0.5), tf.int32)
    out = _gather_rows_cols(images, rows, cols)

    def grad(upstream):
        # out(p) = I(p - s), so d out / d s = -(grad I)(p - s): the image gradient, translated.
        gy, gx = central_differences(images)
        d_dy = -tf.reduce_sum(upstream * _gather_rows_cols(gy, rows, cols), axis=[1, 2, 3])
        d_dx = -tf.reduce_sum(upstream * _gather_rows_cols(gx, rows, cols), axis=[1, 2, 3])
        # The images get the exact gradient of the gather, so G(z) upstream still learns.
        with tf.GradientTape() as tape:
            tape.watch(images)
            again = _gather_rows_cols(images, rows, cols)
        d_images = tape.gradient(again, images, output_gradients=upstream)
        return d_images, tf.cast(tf.stack([d_dy, d_dx], axis=-1), shifts.dtype)

    return out, grad


def translate(images: tf.Tensor, shifts: tf.Tensor, interpolation: str = "bilinear") -> tf.Tensor:
    """Shift each image by its own (dy, dx), with a useful gradient for the shift.

    images: (B, H, W, C) float (H, W >= 2); shifts: (B, 2) float, (dy, dx) in pixels.
    Returns (B, H, W, C) in the dtype of `images`:
        out[b, y, x] = images[b, y - dy, x - dx]
    so a positive dy moves the content down (towards larger row indices) and a positive dx moves
    it right. Pixels that come from outside the image repeat its edge; for whole-pixel shifts
    translate(translate(I, s), -s) == I away from the borders.

    interpolation:
      "bilinear"  sub-pixel shifts; ordinary autodiff gives exact gradients for images and shifts
                  (piecewise linear in the shift, with kinks at whole pixels).
      "nearest"   the shift is rounded (p - s to the nearest pixel), which has no useful
                  derivative, so `tf.custom_gradient` supplies one: d loss / d s =
                  -sum(upstream * translated central-difference image gradient), the gradient of
                  the continuous translation it approximates (one-sided at the image borders).
                  The images receive the exact gradient of the rounded sampling.

    Works eagerly and inside `tf.function`, for any batch size."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; "
                         f"got {interpolation!r}")
    images = tf.convert_to_tensor(images)
    shifts = tf.convert_to_tensor(shifts)
    if interpolation == "nearest":
        return _translate_nearest(images, shifts)
    shape = tf.shape(images)
    s = tf.cast(shifts, _coordinate_dtype(images.dtype))
    out = _lerp_axis(images, _source_positions(shape[1], s[:, 0]), axis=1)
    return _lerp_axis(out, _source_positions(shape[2], s[:, 1]), axis=2)


# ------------------------------------------------- convolutions with a matmul weight gradient

# Output positions per image (of the strided convolution; of the transposed one, its input) up to
# which patches_filter_gradient beats TensorFlow's weight gradient. Measured on a 2-core Xeon with
# AMX-BF16, batch 64, 5x5 kernels, stride 2 (docs/speed.md): 8x8x256 -> 4x4x512 37-40 ms -> 12 ms
# in bfloat16, 34 -> 30 ms in float32; 16x16x128 -> 8x8x256 14 -> 18 ms (slower): only 4x4 maps.
PATCHES_GRADIENT_MAX_POSITIONS = 16


def patches_filter_gradient(x: tf.Tensor, dy: tf.Tensor, kernel_size: int,
                            stride: int) -> tf.Tensor:
    """The weight gradient of y = tf.nn.conv2d(x, w, stride, "SAME") for the output gradient `dy`,
    as one matrix product of x's patches (B * positions, k * k * C_in) with dy (B * positions,
    C_out): (k, k, C_in, C_out), what tf.nn.conv2d's gradient gives for w, in x's dtype. NHWC."""
    k, c_in, c_out = kernel_size, x.shape[-1], dy.shape[-1]
    patches = tf.image.extract_patches(x, [1, k, k, 1], [1, stride, stride, 1], [1, 1, 1, 1],
                                       "SAME")
    product = tf.matmul(tf.reshape(patches, (-1, k * k * c_in)), tf.reshape(dy, (-1, c_out)),
                        transpose_a=True)
    return tf.reshape(product, (k, k, c_in, c_out))


def conv2d(x: tf.Tensor, w: tf.Tensor, stride: int) -> tf.Tensor:
    """tf.nn.conv2d(x, w, stride, "SAME") (NHWC, w (k, k, C_in, C_out) square, of x's dtype) whose
    weight gradient is patches_filter_gradient; the input gradient is TensorFlow's own."""

    @tf.custom_gradient
    def forward(x, w):
        def grad(dy):
            dx = tf.nn.conv2d_transpose(dy, w, tf.shape(x), stride, "SAME")
            return dx, patches_filter_gradient(x, dy, w.shape[0], stride)
        return tf.nn.conv2d(x, w, stride, "SAME"), grad

    return forward(x, w)


def conv2d_transpose(x: tf.Tensor, w: tf.Tensor, output_shape, stride: int) -> tf.Tensor:
    """tf.nn.conv2d_transpose(x, w, output_shape, stride, "SAME") (NHWC, w (k, k, C_out, C_in)
    square, of x's dtype) whose weight gradient is patches_filter_gradient of the output gradient
    and x (a transposed convolution is the input gradient of the convolution from y's shape to
    x's); the input gradient is TensorFlow's own, the strided convolution of dy."""

    @tf.custom_gradient
    def forward(x, w):
        def grad(dy):
            dx = tf.nn.conv2d(dy, w, stride, "SAME")
            return dx, patches_filter_gradient(dy, x, w.shape[0], stride)
        return tf.nn.conv2d_transpose(x, w, output_shape, stride, "SAME"), grad

    return forward(x, w)
