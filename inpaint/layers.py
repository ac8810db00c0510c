"""Keras pieces over `inpaint.ops`: a bilinear-upsampling kernel initializer for transposed
convolutions, ConvOffset2D, the learned-offset sampling of a deformable convolution, and Keras's
BatchNormalization, Conv2D and Conv2DTranspose with faster training passes (a fused batch norm; a
matmul weight gradient on 4x4 maps), under Keras's class names so that weight files load across.

They are registered as `inpaint>BilinearInitializer`, `inpaint>ConvOffset2D`,
`inpaint>BatchNormalization`, `inpaint>Conv2D` and `inpaint>Conv2DTranspose` and have a
`get_config`, so models holding them save to `.keras` files and load back with `safe_mode=True`
(`inpaint.models._custom_objects` lists them for the loader).
"""

from __future__ import annotations

import contextlib
import contextvars

import keras
import tensorflow as tf

from inpaint import ops


@keras.saving.register_keras_serializable(package="inpaint")
class BilinearInitializer(keras.initializers.Initializer):
    """Initialise a stride-`factor` transposed convolution ('same' padding) to exact bilinear
    upsampling of each channel; see `ops.bilinear_kernel` for the weights and the convention.

    For kernels of shape (k, k, filters, in_channels) (`Conv2DTranspose`) with
    k >= 2 * factor - factor % 2, e.g. `Conv2DTranspose(c, 4, strides=2, padding="same",
    kernel_initializer=BilinearInitializer(2))`; the 5x5 kernels of DCGAN work too."""

    def __init__(self, factor: int = 2):
        if int(factor) < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.factor = int(factor)

    def __call__(self, shape, dtype=None):
        if len(shape) != 4 or shape[0] != shape[1]:
            raise ValueError(f"BilinearInitializer needs a square (k, k, out, in) kernel, "
                             f"got shape {tuple(shape)}")
        return ops.bilinear_kernel(self.factor, shape[0], shape[2], shape[3],
                                   dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {"factor": self.factor}


@keras.saving.register_keras_serializable(package="inpaint")
class ConvOffset2D(keras.layers.Layer):
    """(B, H, W, C) -> (B, H, W, C): the input resampled at learned per-pixel, per-channel offsets,
    to be followed by an ordinary convolution, which together form a deformable convolution
    (Dai et al. 2017; this layer is the ConvOffset2D of Jeon & Kim 2017 / deform-conv).

    A 3x3 convolution without bias predicts 2C maps, one (dy, dx) in pixels per channel and pixel,
    and `ops.sample_offsets` samples the input there bilinearly (clipped to the map). The kernel
    starts N(0, init_stddev^2) with a small stddev, so a new layer is close to the identity and the
    network starts as the plain convolution it precedes. Adds 3 * 3 * C * 2C weights."""

    def __init__(self, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.init_stddev = float(init_stddev)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("ConvOffset2D needs a known channel count")
        self.kernel = self.add_weight(
            name="kernel", shape=(3, 3, channels, 2 * channels),
            initializer=keras.initializers.RandomNormal(stddev=self.init_stddev), trainable=True)

    def offsets(self, inputs):
        """The predicted offsets: (B, H, W, C, 2), (dy, dx) in pixels."""
        inputs = tf.convert_to_tensor(inputs)
        maps = tf.nn.conv2d(inputs, tf.cast(self.kernel, inputs.dtype), strides=1, padding="SAME")
        return tf.reshape(maps, tf.concat([tf.shape(inputs), [2]], axis=0))

    def call(self, inputs):
        return ops.sample_offsets(inputs, self.offsets(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "init_stddev": self.init_stddev}


# How many updates of the moving statistics each training-mode batch-norm call stands for (see
# repeated_moving_updates). A context variable, not a layer attribute, because tf.distribute
# traces each replica's step in a thread of its own over the same layers.
_MOVING_UPDATES: contextvars.ContextVar[int] = contextvars.ContextVar("moving_updates", default=1)


@contextlib.contextmanager
def repeated_moving_updates(times: int):
    """While code is traced (or run eagerly) inside, every training-mode call of an
    inpaint BatchNormalization updates its moving statistics as `times` calls on the same batch
    would have: m <- m * mu^times + s * (1 - mu^times). For a step that reuses one forward pass
    where it used to run the same one `times` times. Per thread: replicas do not see each
    other's."""
    token = _MOVING_UPDATES.set(int(times))
    try:
        yield
    finally:
        _MOVING_UPDATES.reset(token)


@keras.saving.register_keras_serializable(package="inpaint")
class BatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization (same weights, options and results) whose training-mode
    call on NHWC maps is TensorFlow's fused kernel (FusedBatchNormV3, oneDNN's on CPUs) instead of
    Keras's moments and normalisation as separate ops: one pass forward and one back instead of
    about ten (the dcgan64 step on a 2-core AMX Xeon: 0.60 -> 0.49 s in bfloat16, 1.10 -> 1.03 s
    in float32; docs/speed.md).

    It normalises by the batch's mean and biased variance and updates the moving statistics with
    Keras's formula (the kernel's variance is Bessel-corrected, so it is scaled back by (n-1)/n).
    Inference, other ranks or axes, masks, renorm and synchronised (multi-replica) moments take
    Keras's own path.

    The class keeps Keras's name on purpose: Keras keys a layer's weights in `.weights.h5` files
    by its class name in snake case, so this name is what lets checkpoints and weights written
    with either class load into networks built with the other."""

    @property
    def momentum(self) -> float:
        """The moving statistics' decay per call: Keras's `momentum`, raised to the power of
        repeated_moving_updates' count inside one (Keras's own path reads it too)."""
        return self._momentum ** _MOVING_UPDATES.get()

    @momentum.setter
    def momentum(self, value: float) -> None:
        self._momentum = value

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self._momentum}

    def _fused(self, inputs, training, mask) -> bool:
        return (bool(training) and self.trainable and mask is None and not self.renorm
                and not self.synchronized and self.scale and self.center
                and len(inputs.shape) == 4 and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.convert_to_tensor(inputs)
        if x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            x = tf.cast(x, tf.float32)
        y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=tf.zeros([0]), variance=tf.zeros([0]), epsilon=self.epsilon,
            is_training=True, data_format="NHWC")
        n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        biased = variance * tf.maximum(n - 1.0, 0.0) / n
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m
                                    + tf.stop_gradient(biased) * (1.0 - m))
        return tf.cast(y, self.compute_dtype)


def _patches_gradient_applies(layer, positions) -> bool:
    """Whether `layer` (a 2-D convolution of either kind) is one whose weight gradient
    ops.patches_filter_gradient computes: square kernel and strides, 'same' padding, channels
    last, no dilation or groups, and at most ops.PATCHES_GRADIENT_MAX_POSITIONS `positions` per
    image: the output's of a convolution, the input's of a transposed one (None when unknown)."""
    return (positions is not None and positions <= ops.PATCHES_GRADIENT_MAX_POSITIONS
            and layer.padding == "same" and layer.data_format == "channels_last"
            and getattr(layer, "groups", 1) == 1 and tuple(layer.dilation_rate) == (1, 1)
            and len(set(layer.strides)) == 1 and len(set(layer.kernel_size)) == 1
            and getattr(layer, "output_padding", None) is None)


def _positions(h, w, stride: int = 1):
    if h is None or w is None:
        return None
    return -(-h // stride) * -(-w // stride)


@keras.saving.register_keras_serializable(package="inpaint")
class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D (same weights, options and results) whose weight gradient on small
    output maps (4x4 and below, such as the DCGAN discriminator's last convolution) is one matrix
    product of the input's patches (`ops.conv2d`) instead of TensorFlow's backward-filter kernel,
    3x faster there in bfloat16 on a CPU with AMX. Other shapes take Keras's own path.

    Named as Keras's class so that weight files load across both (see BatchNormalization)."""

    def convolution_op(self, inputs, kernel):
        s = self.strides[0]
        if not _patches_gradient_applies(self, _positions(inputs.shape[1], inputs.shape[2], s)):
            return super().convolution_op(inputs, kernel)
        x = tf.convert_to_tensor(inputs)
        return ops.conv2d(x, tf.cast(tf.convert_to_tensor(kernel), x.dtype), s)


@keras.saving.register_keras_serializable(package="inpaint")
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose (same weights, options and results) whose weight gradient on
    small input maps (4x4 and below, such as the DCGAN generator's first transposed convolution)
    is one matrix product (`ops.conv2d_transpose`), as Conv2D's. Other shapes take Keras's path.

    Named as Keras's class so that weight files load across both (see BatchNormalization)."""

    def call(self, inputs):
        if not _patches_gradient_applies(self, _positions(inputs.shape[1], inputs.shape[2])):
            return super().call(inputs)
        x = tf.convert_to_tensor(inputs)
        s = self.strides[0]
        shape = tf.stack([tf.shape(x)[0], x.shape[1] * s, x.shape[2] * s, self.filters])
        y = ops.conv2d_transpose(x, tf.cast(tf.convert_to_tensor(self.kernel), x.dtype), shape, s)
        y = tf.ensure_shape(y, (None, x.shape[1] * s, x.shape[2] * s, self.filters))
        if self.use_bias:
            # BiasAdd, as Keras's layer: its gradient sums in float32 also for bfloat16 maps
            y = tf.nn.bias_add(y, tf.cast(tf.convert_to_tensor(self.bias), y.dtype))
        return self.activation(y) if self.activation is not None else y
