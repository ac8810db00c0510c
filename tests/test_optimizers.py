"""inpaint.optimizers.Adam against Keras's Adam: the same updates and state, as one fused op."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from inpaint.optimizers import Adam

SHAPES = [(5, 5, 3, 4), (4,), (7, 3)]


def _run(opt, steps: int = 6, seed: int = 0):
    """`steps` updates of fresh N(0, 1) variables by `opt` with fixed random gradients, in a
    tf.function as training runs them. Returns (start, end weights, optimizer variables, fn)."""
    rng = np.random.default_rng(seed)
    start = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    variables = [keras.Variable(w) for w in start]
    grads = [[tf.constant(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
             for _ in range(steps)]
    opt.build(variables)
    apply = tf.function(lambda g: opt.apply(g, variables))
    for g in grads:
        apply(g)
    return (start, [v.numpy() for v in variables], [v.numpy() for v in opt.variables],
            apply.get_concrete_function(grads[0]))


@pytest.mark.parametrize("beta_1", [0.5, 0.9])
def test_fused_adam_updates_as_keras_adam_does(beta_1):
    kwargs = {"learning_rate": 1e-3, "beta_1": beta_1, "epsilon": 1e-8}
    start, ours, our_state, _ = _run(Adam(**kwargs))
    _, theirs, their_state, _ = _run(keras.optimizers.Adam(**kwargs))
    for w0, a, b in zip(start, ours, theirs):
        # Six steps move each weight by up to ~6e-3; float32 rounding of weights near 1 is
        # ~1e-7 a step, so the moves agree to well under 1e-3 of their size.
        np.testing.assert_allclose(a - w0, b - w0, rtol=1e-3, atol=1e-6)
        assert np.abs(a - w0).max() > 1e-3  # they moved
    assert len(our_state) == len(their_state)  # the same variables, in the same order
    for a, b in zip(our_state, their_state):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_fused_adam_is_one_resource_apply_adam_per_variable():
    *_, fn = _run(Adam(learning_rate=1e-3), steps=1)
    kinds = [op.type for op in fn.graph.get_operations()]
    assert kinds.count("ResourceApplyAdam") == len(SHAPES)
    *_, fn = _run(keras.optimizers.Adam(learning_rate=1e-3), steps=1)
    assert "ResourceApplyAdam" not in [op.type for op in fn.graph.get_operations()]


def test_amsgrad_takes_keras_update():
    kwargs = {"learning_rate": 1e-3, "amsgrad": True}
    _, ours, _, fn = _run(Adam(**kwargs))
    _, theirs, _, _ = _run(keras.optimizers.Adam(**kwargs))
    assert "ResourceApplyAdam" not in [op.type for op in fn.graph.get_operations()]
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
