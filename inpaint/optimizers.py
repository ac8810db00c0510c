"""Keras's Adam with its update as one fused kernel per variable.

Keras 3's Adam updates each variable with about ten separate element-wise ops (two moments,
square, square root, division, three assignments), each a pass over memory. TensorFlow's
ResourceApplyAdam does the same arithmetic in one pass: for the DCGAN's 9.45 million weights
(generator and discriminator) 23 ms -> 8 ms a step on a 2-core AMX Xeon (docs/speed.md).

The formula is Keras's (Kingma & Ba 2015, Algorithm 1 with the bias corrections folded into the
step size): with t = iterations + 1,
    m <- m + (g - m)(1 - beta_1);  v <- v + (g^2 - v)(1 - beta_2)
    w <- w - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)
and the optimizer's variables (iterations, the moments) are Keras's own, so its state saves and
loads as before (inpaint.checkpoints). Only the rounding of the last bit may differ.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class Adam(keras.optimizers.Adam):
    """keras.optimizers.Adam whose update_step is tf.raw_ops.ResourceApplyAdam on a single
    device. AMSGrad, and variables under a tf.distribute strategy (mirrored copies, whose
    updates Keras routes per device), take Keras's own update."""

    def _fusable(self, variable) -> bool:
        return (not self.amsgrad and not tf.distribute.has_strategy()
                and isinstance(variable, tf.Variable) and variable.dtype == tf.float32)

    def update_step(self, gradient, variable, learning_rate):
        if not self._fusable(variable):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        t = tf.cast(self.iterations + 1, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle,
            beta1_power=tf.pow(tf.constant(self.beta_1, tf.float32), t),
            beta2_power=tf.pow(tf.constant(self.beta_2, tf.float32), t),
            lr=tf.cast(learning_rate, tf.float32), beta1=tf.constant(self.beta_1, tf.float32),
            beta2=tf.constant(self.beta_2, tf.float32),
            epsilon=tf.constant(self.epsilon, tf.float32),
            grad=tf.cast(gradient, tf.float32), use_locking=False, use_nesterov=False)
