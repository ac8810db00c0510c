"""The R1 penalty on real faces (train.r1_gamma, train.r1_every)."""
import numpy as np
import pytest

from inpaint.config import apply_overrides
from inpaint.errors import ConfigError
from inpaint.train import GANTrainer

from .conftest import tiny_config


def _real(seed=0, n=4):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 16, 16, 3)).astype("float32")


def _grad_sq(D, real):
    """|grad_x D(x)|^2 per example, D in training mode (batch moments, as the step runs it)."""
    import tensorflow as tf

    x = tf.constant(real)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(D(x, training=True))
    g = tape.gradient(total, x)
    return tf.reduce_sum(tf.square(g), axis=[1, 2, 3]).numpy()


def test_reported_penalty_is_half_gamma_times_the_mean_squared_gradient_by_the_pixels():
    cfg = apply_overrides(tiny_config(), ["train.r1_gamma=0.5", "train.r1_every=4"])
    tr = GANTrainer(cfg)
    real = _real()
    expected = 0.5 * 0.5 * _grad_sq(tr.discriminator, real).mean()
    assert expected > 0
    m = tr.train_step(real)
    assert m["r1"] == pytest.approx(expected, rel=1e-5)


def test_penalised_update_is_adams_step_on_the_gradient_of_loss_plus_every_times_penalty():
    """The discriminator's update on an R1 step equals one written out here: Adam on the
    gradient of the cross-entropy plus r1_every * r1_gamma / 2 * mean |grad_x D(x)|^2; and it
    differs from the update without the penalty."""
    import tensorflow as tf

    gamma, every = 0.3, 4
    cfg = apply_overrides(tiny_config(), [f"train.r1_gamma={gamma}", f"train.r1_every={every}",
                                          "train.ema_decay=0"])
    new, ref, plain = GANTrainer(cfg), GANTrainer(cfg), GANTrainer(cfg)
    for tr in (ref, plain):
        tr.generator.set_weights(new.generator.get_weights())
        tr.discriminator.set_weights(new.discriminator.get_weights())
    real = tf.constant(_real())
    z = tf.constant(np.random.default_rng(1).uniform(-1, 1, (4, cfg.model.z_dim)), tf.float32)
    new._update(real, z, tf.reduce_mean, True)
    plain._update(real, z, tf.reduce_mean, False)

    G, D = ref.generator, ref.discriminator
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    fake = G(z, training=True)
    with tf.GradientTape() as tape:
        with tf.GradientTape() as inner:
            inner.watch(real)
            real_logits = D(real, training=True)
        g = inner.gradient(real_logits, real)
        penalty = gamma / 2 * tf.reduce_mean(tf.reduce_sum(g * g, axis=[1, 2, 3]))
        fake_logits = D(fake, training=True)
        loss = (tf.reduce_mean(bce(tf.ones_like(real_logits), real_logits))
                + tf.reduce_mean(bce(tf.zeros_like(fake_logits), fake_logits)) + every * penalty)
    ref.d_opt.apply(tape.gradient(loss, D.trainable_variables), D.trainable_variables)

    differs = 0
    for a, b, c in zip(new.discriminator.trainable_variables, D.trainable_variables,
                       plain.discriminator.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
        differs += not np.allclose(c.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert differs


def test_penalty_every_r1_every_steps_from_step_0_and_reported_in_between():
    cfg = apply_overrides(tiny_config(), ["train.r1_gamma=0.5", "train.r1_every=3"])
    tr = GANTrainer(cfg)
    due = []
    for tr.step in range(7):
        due.append(tr.r1_due())
    assert due == [True, False, False, True, False, False, True]
    tr.step = 0
    values = [tr.train_step(_real(seed=s))["r1"] for s in range(7)]
    assert values[1] == values[2] == values[0] and values[4] == values[5] == values[3]
    assert len({values[0], values[3], values[6]}) == 3  # new batches, new weights: measured anew
    # the step with the penalty and the one without are traced once each, not once per step
    assert tr._train_step.experimental_get_tracing_count() == 2


def test_no_penalty_no_r1_metric():
    tr = GANTrainer(tiny_config())
    assert "r1" not in tr.train_step(_real()) and not tr.r1_due()


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1"])
def test_bad_gamma_is_a_config_error(value):
    with pytest.raises(ConfigError, match="train.r1_gamma"):
        apply_overrides(tiny_config(), [f"train.r1_gamma={value}"])


def test_bad_every_is_a_config_error():
    with pytest.raises(ConfigError, match="train.r1_every"):
        apply_overrides(tiny_config(), ["train.r1_every=0"])


# A resumed run with R1 equals an uninterrupted one: tests/test_train.py,
# test_resumed_run_matches_an_uninterrupted_one[r1].


def test_bfloat16_penalised_step_is_finite():
    cfg = apply_overrides(tiny_config(), ["train.precision=mixed_bfloat16", "train.r1_gamma=0.5"])
    m = GANTrainer(cfg).train_step(_real())
    assert np.isfinite(list(m.values())).all() and m["r1"] > 0
