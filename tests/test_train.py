import json
import shutil

import numpy as np
import pytest

from inpaint.checkpoints import list_checkpoints
from inpaint.config import apply_overrides
from inpaint.errors import DataError, Interrupted, RunDirError
from inpaint.train import GANTrainer, prepare_run_dir, train

from .conftest import null_space_weights, tiny_config, write_faces


def test_one_step_changes_both_networks(tiny_cfg):
    tr = GANTrainer(tiny_cfg)
    g0 = [v.numpy().copy() for v in tr.generator.trainable_variables]
    d0 = [v.numpy().copy() for v in tr.discriminator.trainable_variables]
    real = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
    m = tr.train_step(real)
    assert tr.step == 1 and set(m) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(list(m.values())))
    assert any(not np.allclose(a, v.numpy()) for a, v in zip(g0, tr.generator.trainable_variables))
    assert any(not np.allclose(a, v.numpy())
               for a, v in zip(d0, tr.discriminator.trainable_variables))
    # Adam counted one discriminator update and g_steps generator updates
    assert int(tr.d_opt.iterations.numpy()) == 1
    assert int(tr.g_opt.iterations.numpy()) == tiny_cfg.train.g_steps


def _reference_step(tr, real, z):
    """The GAN update as written before G(z) was shared: G run again for every generator
    update, each training-mode call updating G's batch-norm statistics once."""
    import tensorflow as tf

    G, D = tr.generator, tr.discriminator
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    with tf.GradientTape() as tape:
        fake = G(z, training=True)
        real_logits, fake_logits = D(real, training=True), D(fake, training=True)
        d_loss = (tf.reduce_mean(bce(tf.ones_like(real_logits), real_logits))
                  + tf.reduce_mean(bce(tf.zeros_like(fake_logits), fake_logits)))
    tr.d_opt.apply(tape.gradient(d_loss, D.trainable_variables), D.trainable_variables)
    for _ in range(tr.cfg.train.g_steps):
        with tf.GradientTape() as tape:
            logits = D(G(z, training=True), training=True)
            g_loss = tf.reduce_mean(bce(tf.ones_like(logits), logits))
        tr.g_opt.apply(tape.gradient(g_loss, G.trainable_variables), G.trainable_variables)
    return float(d_loss), float(g_loss)


@pytest.mark.parametrize("g_steps", [1, 2])
def test_shared_generator_forward_computes_what_two_forwards_did(g_steps):
    """The step runs G(z) once for D's update and G's first: two steps of it give the weights,
    batch-norm statistics and losses of the step that ran G for each (float32; the statistics'
    two updates folded into one differ by rounding only)."""
    cfg = apply_overrides(tiny_config(), [f"train.g_steps={g_steps}", "train.ema_decay=0"])
    import tensorflow as tf

    new, ref = GANTrainer(cfg), GANTrainer(cfg)
    step = tf.function(lambda real, z: new._update(real, z, tf.reduce_mean))
    for a, b in ((new.generator, ref.generator), (new.discriminator, ref.discriminator)):
        b.set_weights(a.get_weights())
    rng = np.random.default_rng(0)
    for _ in range(2):
        real = rng.uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
        z = rng.uniform(-1, 1, (4, cfg.model.z_dim)).astype("float32")
        m = {k: float(v) for k, v in step(real, z).items()}
        d_loss, g_loss = _reference_step(ref, real, z)
        assert m["d_loss"] == pytest.approx(d_loss, rel=1e-6)
        assert m["g_loss"] == pytest.approx(g_loss, rel=1e-6)
    loose = null_space_weights(new)
    assert loose
    for a, b in ((new.generator, ref.generator), (new.discriminator, ref.discriminator)):
        # A bias just before a batch norm changes nothing the step computes (the norm subtracts
        # it): its gradient is rounding noise, which Adam scales to steps of up to lr, so it
        # and the moving mean after it are held to that bound, not to the others' few ulps.
        for va, vb in zip(a.weights, b.weights):
            atol = 2 * 2 * g_steps * cfg.train.lr if va.path in loose else 1e-6
            np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-5, atol=atol,
                                       err_msg=va.path)
    moved = [v for v in new.generator.weights if "moving" in v.path]
    assert moved and all(np.any(v.numpy() != 0) for v in moved)


def test_run_writes_everything(tiny_run):
    for name in ("config.toml", "run.json", "metrics.jsonl", "model/generator.keras",
                 "model/discriminator.keras", "model/model.json", "samples/step_0000005.png"):
        assert (tiny_run / name).exists(), name
    assert list((tiny_run / "logs").glob("events.out.tfevents.*"))
    lines = [json.loads(s) for s in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 9))  # 16 images / batch 4 * 2 epochs
    assert {"d_loss", "g_loss", "d_real", "d_fake", "images_per_s"} <= set(lines[0])
    assert [p.name for p in list_checkpoints(tiny_run / "checkpoints")] == [
        "ckpt-0000005", "ckpt-0000008"]


def test_resume_continues_counters_and_sample_z(tmp_path):
    data = write_faces(tmp_path / "faces", n=8)
    cfg = tiny_config()
    run = tmp_path / "run"
    prepare_run_dir(run, cfg)
    train(data, run, cfg, progress=False)  # 2 epochs x 2 steps
    first = GANTrainer(cfg)
    first.restore_latest(run / "checkpoints")
    longer = apply_overrides(tiny_config(), ["train.epochs=3"])
    prepare_run_dir(run, longer)
    result = train(data, run, longer, progress=False)
    assert (result.resumed_from, result.step) == (4, 6)
    steps = [json.loads(s)["step"] for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    after = GANTrainer(longer)
    after.restore_latest(run / "checkpoints")
    assert after.step == 6 and int(after.d_opt.iterations.numpy()) == 6
    np.testing.assert_array_equal(after.sample_z, first.sample_z)


@pytest.mark.parametrize("extra", [[], ["train.r1_gamma=0.2", "train.r1_every=2"]],
                         ids=["plain", "r1"])
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch, extra):
    """Interrupted at step 3 and resumed, a run ends where an uninterrupted one does; with R1
    every other step, interrupted between two R1 steps, it keeps the schedule (it follows the
    step, not the session)."""
    data = write_faces(tmp_path / "faces", n=8)
    cfg = apply_overrides(tiny_config(), ["train.epochs=2", *extra])
    straight = tmp_path / "straight"
    prepare_run_dir(straight, cfg)
    train(data, straight, cfg, progress=False)

    broken = tmp_path / "broken"
    prepare_run_dir(broken, cfg)
    real_step = GANTrainer.train_step

    def interrupt_at_3(self, batch):
        if self.step == 3:
            raise KeyboardInterrupt
        return real_step(self, batch)

    monkeypatch.setattr(GANTrainer, "train_step", interrupt_at_3)
    with pytest.raises(Interrupted, match="interrupted at step 3"):
        train(data, broken, cfg, progress=False)
    monkeypatch.setattr(GANTrainer, "train_step", real_step)
    assert list_checkpoints(broken / "checkpoints")[-1].name == "ckpt-0000003"
    train(data, broken, cfg, progress=False)

    a, b = GANTrainer(cfg), GANTrainer(cfg)
    a.restore_latest(straight / "checkpoints")
    b.restore_latest(broken / "checkpoints")
    assert a.step == b.step == 4
    for va, vb in zip(a.generator.weights + a.ema_generator.weights + a.discriminator.weights,
                      b.generator.weights + b.ema_generator.weights + b.discriminator.weights):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), atol=1e-5, err_msg=va.path)


def test_damaged_latest_checkpoint_falls_back(tiny_run, tiny_cfg):
    ckpts = list_checkpoints(tiny_run / "checkpoints")
    state = ckpts[-1] / "state.npz"
    saved = state.read_bytes()
    try:
        state.write_bytes(saved[:100])
        tr = GANTrainer(tiny_cfg)
        assert tr.restore_latest(tiny_run / "checkpoints") == ckpts[-2]
        assert tr.step == 5
    finally:
        state.write_bytes(saved)


def test_run_dir_refuses_other_config_and_foreign_folders(tmp_path, tiny_cfg):
    prepare_run_dir(tmp_path / "run", tiny_cfg)
    with pytest.raises(RunDirError, match="train.lr: run has 0.0002, asked for 0.1"):
        prepare_run_dir(tmp_path / "run", apply_overrides(tiny_config(), ["train.lr=0.1"]))
    prepare_run_dir(tmp_path / "run", apply_overrides(tiny_config(), ["train.epochs=9"]))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        prepare_run_dir(tmp_path / "other", tiny_cfg)


def test_fewer_images_than_a_batch(tmp_path, tiny_cfg):
    data = write_faces(tmp_path / "faces", n=3)
    prepare_run_dir(tmp_path / "run", tiny_cfg)
    with pytest.raises(DataError, match="3 usable images, fewer than the batch size 4"):
        train(data, tmp_path / "run", tiny_cfg, progress=False)


def test_bfloat16_training_step_is_finite():
    cfg = apply_overrides(tiny_config(), ["train.precision=mixed_bfloat16"])
    tr = GANTrainer(cfg)
    real = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
    for _ in range(3):
        m = tr.train_step(real)
    assert all(np.isfinite(list(m.values())))


# ----------------------------------------------------------------------------- weight average


def test_generator_average_follows_its_formula_with_warm_up(tiny_cfg):
    tr = GANTrainer(tiny_cfg)
    real = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
    for step in (1, 2):
        ema_before = [v.numpy().copy() for v in tr.ema_generator.weights]
        tr.train_step(real)
        d = min(0.999, (1 + step) / (10 + step))  # 2/11, then 3/12
        for e, e0, g in zip(tr.ema_generator.weights, ema_before, tr.generator.weights):
            np.testing.assert_allclose(e.numpy(), d * e0 + (1 - d) * g.numpy(), rtol=1e-6,
                                       atol=1e-7)
    # the average differs from the trained weights, and samples come from it
    assert any(not np.allclose(e.numpy(), g.numpy())
               for e, g in zip(tr.ema_generator.trainable_weights, tr.generator.trainable_weights))
    assert tr.output_generator is tr.ema_generator


def test_steps_are_traced_once_not_once_per_step(tiny_cfg):
    tr = GANTrainer(tiny_cfg)
    real = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
    for _ in range(4):
        tr.train_step(real)
    assert tr._train_step.experimental_get_tracing_count() == 1
    assert tr._ema_step.experimental_get_tracing_count() == 1


def test_no_average_when_ema_decay_is_zero(tiny_cfg):
    tr = GANTrainer(apply_overrides(tiny_cfg, ["train.ema_decay=0"]))
    assert tr.ema_generator is None and tr.output_generator is tr.generator


def test_exported_generator_is_the_average_and_raw_export_the_trained_one(tiny_run, tiny_cfg,
                                                                          tmp_path):
    from inpaint.models import load_model
    from inpaint.train import export_run

    tr = GANTrainer(tiny_cfg)
    tr.restore_latest(tiny_run / "checkpoints")
    z = np.random.default_rng(1).uniform(-1, 1, (3, 8)).astype("float32")
    exported = load_model(tiny_run / "model")
    assert exported.meta["generator"] == "average"
    np.testing.assert_allclose(exported.generator(z), tr.ema_generator(z), atol=1e-6)
    raw = load_model(export_run(tiny_run, tiny_cfg, raw=True, out_dir=tmp_path / "raw"))
    assert raw.meta["generator"] == "trained"
    np.testing.assert_allclose(raw.generator(z), tr.generator(z), atol=1e-6)
    assert not np.allclose(raw.generator(z), exported.generator(z), atol=1e-4)


def test_checkpoint_without_average_starts_it_from_the_generator(tiny_run, tiny_cfg, tmp_path):
    import shutil

    ckpt = list_checkpoints(tiny_run / "checkpoints")[-1]
    old = tmp_path / "checkpoints" / ckpt.name
    shutil.copytree(ckpt, old)
    (old / "generator_ema.weights.h5").unlink()  # as written before the average existed
    tr = GANTrainer(tiny_cfg)
    assert tr.restore_latest(tmp_path / "checkpoints") == old
    for e, g in zip(tr.ema_generator.weights, tr.generator.weights):
        np.testing.assert_array_equal(e.numpy(), g.numpy())


# ----------------------------------------------------------------------------- warm start


def test_init_from_starts_from_the_models_weights_with_fresh_optimizers(tiny_run, tmp_path):
    from inpaint.models import load_model

    data = write_faces(tmp_path / "faces", n=8)
    cfg = apply_overrides(tiny_config(), ["train.epochs=1"])
    run = tmp_path / "warm"
    prepare_run_dir(run, cfg)
    seen = {}
    real_step = GANTrainer.train_step

    def record_first(self, batch):  # the weights the first step starts from
        if self.step == 0:
            seen["g"] = [v.numpy().copy() for v in self.generator.weights]
            seen["ema"] = [v.numpy().copy() for v in self.ema_generator.weights]
            seen["d"] = [v.numpy().copy() for v in self.discriminator.weights]
            seen["iterations"] = int(self.g_opt.iterations.numpy())
        return real_step(self, batch)

    GANTrainer.train_step = record_first
    try:
        train(data, run, cfg, init_from=tiny_run / "model", progress=False)
    finally:
        GANTrainer.train_step = real_step
    model = load_model(tiny_run / "model")
    for got, want in ((seen["g"], model.generator), (seen["ema"], model.generator),
                      (seen["d"], model.discriminator)):
        for a, b in zip(got, want.weights):
            np.testing.assert_array_equal(a, b.numpy())
    assert seen["iterations"] == 0
    record = json.loads((run / "run.json").read_text())
    assert record["init_from"]["path"] == str(model.path)


def test_warm_start_averages_at_full_decay_from_its_first_step_and_after_resume(tiny_run,
                                                                               tmp_path):
    # The warm-up (d = 2/11 at step 1) would replace the model's average by the first steps'
    # weights; a warm start keeps d = ema_decay, and so does the run resumed from its checkpoint.
    data = write_faces(tmp_path / "faces", n=8)
    cfg = apply_overrides(tiny_config(), ["train.epochs=1"])
    run = tmp_path / "warm"
    prepare_run_dir(run, cfg)
    seen = []
    real_step = GANTrainer.train_step

    def record(self, batch):
        before = [v.numpy().copy() for v in self.ema_generator.weights]
        out = real_step(self, batch)
        seen.append((self.ema_warmup, before, [v.numpy().copy() for v in self.generator.weights],
                     [v.numpy().copy() for v in self.ema_generator.weights]))
        return out

    GANTrainer.train_step = record
    try:
        train(data, run, cfg, init_from=tiny_run / "model", progress=False)
        fresh = GANTrainer(cfg)
        assert fresh.ema_warmup  # a run from scratch warms up
        cfg2 = apply_overrides(cfg, ["train.epochs=2"])
        seen.clear()
        train(data, run, cfg2, progress=False)  # resumes from the warm start's checkpoint
    finally:
        GANTrainer.train_step = real_step
    assert seen, "the resumed run made no step"
    for warmup, before, g, after in seen:
        assert not warmup
        for e0, gi, e in zip(before, g, after):
            np.testing.assert_allclose(e, 0.999 * e0 + 0.001 * gi, rtol=1e-6, atol=1e-7)


def test_init_from_a_model_of_another_architecture_names_the_keys(tiny_run, tmp_path):
    from inpaint.errors import ConfigError

    data = write_faces(tmp_path / "faces", n=8)
    cfg = apply_overrides(tiny_config(), ["model.gf=4"])
    prepare_run_dir(tmp_path / "run", cfg)
    with pytest.raises(ConfigError, match=r"model.gf: model has 8, run has 4"):
        train(data, tmp_path / "run", cfg, init_from=tiny_run / "model", progress=False)


def test_training_on_several_folders_uses_all_their_images(tmp_path):
    a = write_faces(tmp_path / "a", n=6, seed=1)
    b = write_faces(tmp_path / "b", n=5, seed=2)
    cfg = apply_overrides(tiny_config(), ["train.epochs=1"])
    prepare_run_dir(tmp_path / "run", cfg)
    result = train([a, b], tmp_path / "run", cfg, progress=False)
    assert result.images_used == 11 and result.step == 2  # 11 images // batch 4
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["dataset"] == [str(a.resolve()), str(b.resolve())]


def test_auto_precision_trains_in_bfloat16_only_where_it_is_native(tiny_cfg, monkeypatch,
                                                                   tmp_path):
    from inpaint import hardware
    from inpaint.models import network_policy

    cfg = apply_overrides(tiny_cfg, ["train.precision=auto"])
    for native, policy in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(hardware, "native_bfloat16", lambda n=native: (n, "pretend"))
        tr = GANTrainer(cfg)
        assert tr.precision == policy and network_policy(tr.generator) == policy
        assert network_policy(tr.ema_generator) == policy
    # a run may resume in another precision (same float32 weights): not a config conflict
    prepare_run_dir(tmp_path / "run", apply_overrides(tiny_config(), ["train.precision=auto"]))
    prepare_run_dir(tmp_path / "run", tiny_config())


def test_posthoc_average_is_the_running_average_when_g_holds_still_between_snapshots():
    from inpaint.train import posthoc_average

    rng = np.random.default_rng(4)
    start = [rng.normal(size=(3, 2)), rng.normal(size=5)]
    d = 0.9
    # G changes every step: one snapshot a step gives the running average exactly
    gs = [[rng.normal(size=(3, 2)), rng.normal(size=5)] for _ in range(7)]
    ema = [w.copy() for w in start]
    for g in gs:
        ema = [d * e + (1 - d) * w for e, w in zip(ema, g)]
    got = posthoc_average(start, list(enumerate(gs, 1)), d)
    for a, b in zip(got, ema):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)  # float32 of a float64 sum
    # G held still over steps 1-3 and 4-7: snapshots at 3 and 7 are enough
    blocks = [gs[0]] * 3 + [gs[1]] * 4
    ema = [w.copy() for w in start]
    for g in blocks:
        ema = [d * e + (1 - d) * w for e, w in zip(ema, g)]
    for a, b in zip(posthoc_average(start, [(3, gs[0]), (7, gs[1])], d), ema):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="ascending"):
        posthoc_average(start, [(3, gs[0]), (2, gs[1])], d)
    with pytest.raises(ValueError, match="decay"):
        posthoc_average(start, [(3, gs[0])], 1.0)


def _checkpoint_generators(run, cfg):
    from inpaint.models import build_generator

    g, out = build_generator(cfg.model), []
    for p in list_checkpoints(run / "checkpoints"):
        g.load_weights(p / "generator.weights.h5")
        out.append((int(p.name.split("-")[1]), g.get_weights()))
    return out


def _is_moving_statistic(variable) -> bool:
    return variable.name in ("moving_mean", "moving_variance")


def test_recompute_batchnorm_sets_the_statistics_the_weights_produce(tiny_cfg):
    """After recompute_batchnorm each batch norm's input, computed in inference mode over the
    same z, averages its moving mean, and the mean of the batches' biased variances is its moving
    variance; statistics that were off (as a weight average's are) are replaced, the other
    weights are untouched, and the z are seeded."""
    import keras

    from inpaint.models import build_generator
    from inpaint.train import recompute_batchnorm

    g = build_generator(tiny_cfg.model)
    bns = [layer for layer in g.layers if layer.name.startswith("g_bn")]
    assert len(bns) >= 2
    for bn in bns:  # stale statistics: far from what the weights produce
        bn.moving_mean.assign(np.full(bn.moving_mean.shape, 3.0, np.float32))
        bn.moving_variance.assign(np.full(bn.moving_variance.shape, 50.0, np.float32))
    others = [v.numpy().copy() for v in g.weights if not _is_moving_statistic(v)]
    z_dim, batch, batches = tiny_cfg.model.z_dim, 8, 6
    ratios = recompute_batchnorm(g, z_dim, batch, batches=batches, seed=5)
    assert [name for name, _ in ratios] == [bn.name for bn in bns]
    assert all(0 < r < 1 for _, r in ratios)  # the weights produce less variance than 50
    z = np.random.default_rng(5).uniform(-1.0, 1.0, (batches * batch, z_dim)).astype(np.float32)
    for bn in bns:
        x = np.asarray(keras.Model(g.input, bn.input)(z, training=False), np.float64)
        x = x.reshape(batches, -1, x.shape[-1])
        mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
        np.testing.assert_allclose(mean, x.mean((0, 1)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var, x.var(1).mean(0), rtol=1e-5, atol=1e-7)
        assert np.all(var > 0) and not np.allclose(var, 50.0)
    for a, b in zip(others, [v.numpy() for v in g.weights if not _is_moving_statistic(v)],
                    strict=True):
        np.testing.assert_array_equal(a, b)
    before = [v.numpy().copy() for v in g.weights]
    recompute_batchnorm(g, z_dim, batch, batches=batches, seed=5)  # same z: same statistics
    for a, v in zip(before, g.weights, strict=True):
        np.testing.assert_allclose(v.numpy(), a, rtol=1e-6, atol=1e-7)


def test_export_average_is_the_posthoc_average_of_the_run_from_its_start(tiny_run, tmp_path,
                                                                        caplog):
    from inpaint.errors import ConfigError
    from inpaint.models import build_generator, load_model
    from inpaint.train import export_average, posthoc_average, recompute_batchnorm

    data = write_faces(tmp_path / "faces", n=16)
    cfg = apply_overrides(tiny_config(), ["train.epochs=2", "train.checkpoint_every=2",
                                          "train.keep_checkpoints=2"])
    run = tmp_path / "warm"
    prepare_run_dir(run, cfg)
    train(data, run, cfg, init_from=tiny_run / "model", progress=False)
    snaps = _checkpoint_generators(run, cfg)
    assert [t for t, _ in snaps] == [6, 8]
    start = load_model(tiny_run / "model").generator.get_weights()

    def weights(path):
        return load_model(path).generator.get_weights()

    def same(got, want):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    with caplog.at_level("WARNING", logger="inpaint.train"):
        path = export_average(run, cfg, 0.5, out_dir=tmp_path / "a", batchnorm="average")
    # steps 1-5 are gone with their checkpoints: step 6 stands in for them (0.25 * 63/64)
    assert "oldest checkpoint kept is step 6" in caplog.text and "25%" in caplog.text
    same(weights(path), posthoc_average(start, snaps, 0.5))
    meta = load_model(path).meta
    assert meta["step"] == 8
    assert meta["generator"].startswith("average at decay 0.5 of 2 checkpoints (steps 6-8)")
    assert meta["generator"].endswith("batch-norm statistics averaged")
    caplog.clear()
    with caplog.at_level("WARNING", logger="inpaint.train"):
        same(weights(export_average(run, cfg, 0.0, out_dir=tmp_path / "b", batchnorm="average")),
             snaps[-1][1])
    assert "oldest checkpoint" not in caplog.text  # decay 0: only the last one counts
    same(weights(export_average(run, cfg, 0.5, upto=7, out_dir=tmp_path / "c",
                                batchnorm="average")),
         posthoc_average(start, snaps[:1], 0.5))
    # The default recomputes the average's batch-norm statistics for its weights: the weights
    # are the same average, the moving statistics what recompute_batchnorm makes of them.
    recomputed = load_model(export_average(run, cfg, 0.5, out_dir=tmp_path / "e"))
    want = build_generator(cfg.model)
    want.set_weights(posthoc_average(start, snaps, 0.5))
    recompute_batchnorm(want, cfg.model.z_dim, cfg.train.batch_size)
    moving = [_is_moving_statistic(v) for v in want.weights]
    assert sum(moving) == 2 * sum(layer.name.startswith("g_bn") for layer in want.layers) > 0
    for got, exp, averaged, is_moving in zip(recomputed.generator.get_weights(),
                                             want.get_weights(), weights(path), moving,
                                             strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-6)
        if not is_moving:
            np.testing.assert_array_equal(got, averaged)
    assert any(not np.allclose(got, averaged, rtol=1e-3)  # the statistics did change
               for got, averaged, is_moving in zip(recomputed.generator.get_weights(),
                                                   weights(path), moving) if is_moving)
    assert recomputed.meta["generator"].endswith("batch-norm statistics recomputed for its "
                                                 f"weights ({cfg.train.batch_size} x 128 z)")
    with pytest.raises(ConfigError, match="batchnorm must be"):
        export_average(run, cfg, 0.5, out_dir=tmp_path / "d", batchnorm="keep")
    for bad in (float("nan"), 1.0, -0.1):
        with pytest.raises(ConfigError, match="decay must be in"):
            export_average(run, cfg, bad, out_dir=tmp_path / "d")
    with pytest.raises(RunDirError, match="no checkpoint up to step 5"):
        export_average(run, cfg, 0.5, upto=5, out_dir=tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_export_average_refuses_a_start_model_replaced_since_and_takes_the_original(
        tiny_run, tiny_cfg, tmp_path):
    """The --init-from folder (the shipped model's, say) may hold another model by the time the
    run is averaged: the average must not silently start from it."""
    from inpaint.errors import ConfigError
    from inpaint.models import load_model
    from inpaint.train import export_average, posthoc_average

    data = write_faces(tmp_path / "faces", n=16)
    cfg = apply_overrides(tiny_config(), ["train.epochs=1", "train.checkpoint_every=2"])
    init, original = tmp_path / "init", tmp_path / "original"
    shutil.copytree(tiny_run / "model", init)
    shutil.copytree(tiny_run / "model", original)
    run = tmp_path / "warm"
    prepare_run_dir(run, cfg)
    train(data, run, cfg, init_from=init, progress=False)
    snaps = _checkpoint_generators(run, cfg)
    want = posthoc_average(load_model(original).generator.get_weights(), snaps, 0.5)
    shutil.rmtree(init)  # the folder now holds another model: the run's own export
    shutil.copytree(run / "model", init)
    with pytest.raises(RunDirError, match="has been replaced since"):
        export_average(run, cfg, 0.5, out_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RunDirError, match="has been replaced since"):  # a wrong start is refused
        export_average(run, cfg, 0.5, out_dir=tmp_path / "a", start=init)
    got = load_model(export_average(run, cfg, 0.5, out_dir=tmp_path / "b", start=original,
                                    batchnorm="average"))
    for a, b in zip(got.generator.get_weights(), want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ConfigError, match="started from random weights"):
        export_average(tiny_run, tiny_cfg, 0.5, out_dir=tmp_path / "c", start=original)


def test_export_average_of_a_run_from_random_weights_starts_at_its_oldest_checkpoint(
        tiny_run, tiny_cfg, tmp_path):
    from inpaint.models import load_model
    from inpaint.train import export_average, posthoc_average

    (t0, w0), (t1, w1) = _checkpoint_generators(tiny_run, tiny_cfg)
    got = load_model(export_average(tiny_run, tiny_cfg, 0.5, out_dir=tmp_path / "m",
                                    batchnorm="average"))
    for a, b in zip(got.generator.get_weights(), posthoc_average(w0, [(t1 - t0, w1)], 0.5)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert "from the run's checkpoint at step 5" in got.meta["generator"]
