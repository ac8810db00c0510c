"""Training on tf.distribute replicas (on CPU) and completion shared out with --shard.

Logical CPU devices and multi-worker collectives must be set up before TensorFlow starts, so the
training runs happen in fresh processes running this module as a script
(`python -m tests.test_distribute MODE OUT`); the tests then read the runs they wrote.

What "matches" means. Mirrored replicas sum the gradients of the shares of one global batch, so
a run on 2 replicas computes what one device computes, up to the order of float32 sums: measured
here, losses agree to 1.2e-7 at every step and weights to 1e-7 after 12 steps. The exception is
a bias right before a batch norm (and that norm's moving mean): the norm subtracts it, so its
true gradient is 0 and Adam, which divides by the gradient's own size, steps it by up to lr on
round-off alone (measured 1.4e-3 apart after 12 steps, against the bound 2 * lr * steps).
Adam's moment estimates are compared too: they scale with the gradient, which the weights (Adam
is scale-free) would not show, so a loss wrongly scaled across replicas fails here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from .conftest import ROOT, null_space_weights, tiny_config, write_faces

N_IMAGES = 16  # 4 global batches of 4 per epoch
EPOCHS = 3
STEPS = EPOCHS * N_IMAGES // 4
LR = 2e-4  # tiny.toml's
LOSS_ATOL = 1e-5
WEIGHT_ATOL = 1e-5
NULL_ATOL = 2 * LR * STEPS  # weights a batch norm cancels (see the module docstring)
MOMENT_RTOL = 1e-3  # Adam's moment estimates, relative to each array's largest entry
TIMEOUT = 300  # seconds for any subprocess here; the slowest takes about 30 s


def run_script(mode: str, out: Path, *extra: str, env: dict | None = None,
               timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tests.test_distribute", mode, str(out), *extra],
                          cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def restored(run_dir: Path):
    from inpaint.train import GANTrainer

    trainer = GANTrainer(tiny_config())
    assert trainer.restore_latest(run_dir / "checkpoints") is not None
    return trainer


def weight_differences(a, b) -> dict[str, float]:
    pairs = zip(a.generator.weights + a.discriminator.weights,
                b.generator.weights + b.discriminator.weights)
    return {va.path: float(np.abs(va.numpy() - vb.numpy()).max()) for va, vb in pairs}


def assert_same_training(a, b, null: set[str]) -> None:
    """`a` and `b` (restored GANTrainers) trained the same steps on the same batches."""
    assert a.step == b.step
    diffs = weight_differences(a, b)
    assert null and null <= set(diffs)
    tight = {k: v for k, v in diffs.items() if k not in null}
    assert max(tight.values()) <= WEIGHT_ATOL, tight
    assert max(diffs[k] for k in null) <= NULL_ATOL, {k: diffs[k] for k in null}
    for opt_a, opt_b in ((a.g_opt, b.g_opt), (a.d_opt, b.d_opt)):
        assert int(opt_a.iterations.numpy()) == int(opt_b.iterations.numpy())
        for va, vb in zip(opt_a.variables, opt_b.variables):
            slot = va.path.split("/", 1)[-1]  # "adam_1/d_conv1_bias_momentum" -> "d_conv1_..."
            if slot.endswith(("_momentum", "_velocity")) and not any(
                    slot.startswith(n.replace("/", "_") + "_") for n in null):
                ref = np.abs(va.numpy()).max()
                assert np.abs(va.numpy() - vb.numpy()).max() <= MOMENT_RTOL * ref, va.path


def losses(run_dir: Path) -> np.ndarray:
    lines = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, STEPS + 1))
    return np.array([[r[k] for k in ("d_loss", "g_loss", "d_real", "d_fake")] for r in lines])


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored")
    proc = run_script("mirrored", out)
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_cpu_replicas_train_what_one_device_trains(mirrored_runs):
    out, report = mirrored_runs
    assert report["replicas"] == 2
    one, two = restored(out / "one-device"), restored(out / "mirrored")
    np.testing.assert_allclose(losses(out / "mirrored"), losses(out / "one-device"), rtol=0,
                               atol=LOSS_ATOL)
    assert_same_training(one, two, null_space_weights(one))
    assert json.loads((out / "mirrored" / "run.json").read_text())["replicas"] == 2


def test_a_run_resumes_on_another_number_of_replicas(mirrored_runs):
    out, _ = mirrored_runs
    # one device for epoch 1, 2 replicas for epoch 2, one device again for epoch 3
    one, switching = restored(out / "one-device"), restored(out / "switching")
    np.testing.assert_allclose(losses(out / "switching"), losses(out / "one-device"), rtol=0,
                               atol=LOSS_ATOL)
    assert_same_training(one, switching, null_space_weights(one))


def test_exported_model_does_not_depend_on_the_strategy(mirrored_runs):
    from inpaint.models import load_model

    out, _ = mirrored_runs
    configs = []
    for name in ("one-device", "mirrored"):
        model = load_model(out / name)
        configs.append([layer.get_config() for layer in model.generator.layers])
        assert not any(c.get("synchronized") for c in configs[-1])
    assert [sorted(c) for c in configs[0]] == [sorted(c) for c in configs[1]]


def test_unsynchronised_batchnorm_lets_replica_copies_drift(mirrored_runs):
    """Why GANTrainer synchronises batch norm under a strategy: Keras 3's default does not, and
    after one step the two replicas' moving means already differ."""
    _, report = mirrored_runs
    assert report["moving_mean_drift"]["unsynchronised"] > 1e-5
    assert report["moving_mean_drift"]["synchronised"] == 0.0


def test_two_cpu_replicas_add_the_r1_penalty_one_device_adds(tmp_path):
    """R1's gradient by the pixels, through synchronised batch norms, and its per-replica mean
    over the global batch: 2 replicas train what one device trains, penalty included."""
    run_script("mirrored-r1", tmp_path)
    one, two = restored(tmp_path / "one-device"), restored(tmp_path / "mirrored")
    r1 = [[json.loads(line)["r1"] for line in (tmp_path / name / "metrics.jsonl").open()]
          for name in ("one-device", "mirrored")]
    assert len(r1[0]) == STEPS and len(set(r1[0])) == STEPS // 2  # measured every other step
    np.testing.assert_allclose(r1[1], r1[0], rtol=1e-5)
    np.testing.assert_allclose(losses(tmp_path / "mirrored"), losses(tmp_path / "one-device"),
                               rtol=0, atol=LOSS_ATOL)
    assert_same_training(one, two, null_space_weights(one))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_workers(out: Path, epochs: int) -> list[subprocess.Popen]:
    """Two workers of one MultiWorkerMirroredStrategy run on 127.0.0.1 (worker 0 is the chief)."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.test_distribute", "worker", str(out), str(i),
             str(epochs)],
            cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                           "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish_all(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    try:
        outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


@pytest.mark.slow
def test_two_workers_on_localhost_end_with_identical_weights(tmp_path):
    from inpaint.train import prepare_run_dir, train

    write_faces(tmp_path / "faces", n=N_IMAGES)
    outputs = []
    for code, out, err in finish_all(start_workers(tmp_path, EPOCHS)):
        assert code == 0, out + err
        outputs.append((out, err))
    assert f"trained {STEPS} steps" in outputs[0][0]
    assert f"worker done at step {STEPS}/{STEPS}" in outputs[1][0]
    w0, w1 = (np.load(tmp_path / f"weights-{i}.npz") for i in range(2))
    assert w0.files == w1.files and len(w0.files) > 10
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    # written once, by the chief: one metrics line per step, one event file
    run = tmp_path / "run"
    losses(run)
    assert len(list((run / "logs").glob("events.out.tfevents.*"))) == 1
    chief = restored(run)
    for k, v in zip(w0.files, chief.generator.weights + chief.discriminator.weights):
        np.testing.assert_array_equal(w0[k], v.numpy())
    # and it is the training one device does with the same global batch
    cfg = tiny_config()
    cfg.train.epochs = EPOCHS
    prepare_run_dir(tmp_path / "one-device", cfg)
    train(tmp_path / "faces", tmp_path / "one-device", cfg, progress=False)
    np.testing.assert_allclose(losses(run), losses(tmp_path / "one-device"), rtol=0,
                               atol=LOSS_ATOL)
    one = restored(tmp_path / "one-device")
    assert_same_training(one, chief, null_space_weights(one))


@pytest.mark.slow
def test_a_lost_worker_stops_the_other_and_a_restart_resumes(tmp_path):
    """SIGKILL one worker mid-run: the chief stops at once with one line (no traceback, no
    hang); restarting both resumes from the chief's last checkpoint, logs every step once and
    ends with the same weights on both workers."""
    write_faces(tmp_path / "faces", n=N_IMAGES)
    metrics = tmp_path / "run" / "metrics.jsonl"
    procs = start_workers(tmp_path, EPOCHS)
    deadline = time.monotonic() + TIMEOUT
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 6):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    procs[1].kill()
    (code, _, err), _ = finish_all(procs)
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("Error: lost contact with another worker")
    from inpaint.checkpoints import list_checkpoints

    last = int(list_checkpoints(tmp_path / "run" / "checkpoints")[-1].name[5:])
    assert last >= 5
    for code, out, err in finish_all(start_workers(tmp_path, EPOCHS)):
        assert code == 0, out + err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["resumed_from"] == last
    w0, w1 = (np.load(tmp_path / f"weights-{i}.npz") for i in range(2))
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    losses(tmp_path / "run")  # every step logged once


def test_multi_worker_without_tf_config_is_an_error(tmp_path, monkeypatch):
    from inpaint.cli import cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    write_faces(tmp_path / "faces", n=4)
    r = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "faces"), "--out",
                                 str(tmp_path / "run"), "--config",
                                 str(ROOT / "configs" / "tiny.toml"), "--strategy",
                                 "multi-worker", "-q"])
    assert r.exit_code == 1 and "TF_CONFIG, which is not set" in r.output, r.output
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"index": 3}}')
    r = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "faces"), "--out",
                                 str(tmp_path / "run2"), "--strategy", "multi-worker", "-q"])
    assert r.exit_code == 1 and "TF_CONFIG must be JSON like" in r.output, r.output
    assert "Traceback" not in r.output


def test_chief_is_task_chief_or_worker_zero(monkeypatch):
    from inpaint.train import is_chief

    def with_config(cluster, kind, index):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                    "task": {"type": kind, "index": index}}))
        return is_chief("multi-worker")

    two = {"worker": ["h:1", "h:2"]}
    assert with_config(two, "worker", 0) and not with_config(two, "worker", 1)
    with_chief = {"chief": ["h:0"], "worker": ["h:1", "h:2"]}
    assert with_config(with_chief, "chief", 0) and not with_config(with_chief, "worker", 0)
    assert is_chief("mirrored") and is_chief("default")


def test_strategy_may_change_when_resuming_but_batch_must_split(tmp_path):
    from inpaint.config import RESUMABLE_KEYS, apply_overrides
    from inpaint.errors import ConfigError
    from inpaint.train import GANTrainer, prepare_run_dir

    assert "train.strategy" in RESUMABLE_KEYS
    prepare_run_dir(tmp_path / "run", tiny_config())
    prepare_run_dir(tmp_path / "run", apply_overrides(tiny_config(), ["train.strategy=mirrored"]))
    with pytest.raises(ConfigError, match="train.strategy must be one of"):
        apply_overrides(tiny_config(), ["train.strategy=parameter-server"])

    class ThreeReplicas:  # what GANTrainer asks of a strategy to split a batch
        num_replicas_in_sync = 3

    trainer = GANTrainer(tiny_config())
    trainer.strategy = ThreeReplicas()
    with pytest.raises(ConfigError, match="a batch of 4 cannot be split evenly over 3"):
        trainer.train_step(np.zeros((4, 16, 16, 3), np.float32))


# ----------------------------------------------------------------------------- --shard


def test_shards_cover_every_input_exactly_once_whatever_the_order():
    from inpaint.records import in_shard, output_stems

    names = [f"img{i:02d}.png" for i in range(11)] + ["a/x.png", "b/x.png", "X.jpg"]
    stems = output_stems(names)
    for n in (1, 2, 3, 5, 14, 20):
        takes = np.array([in_shard(stems, (i, n)) for i in range(1, n + 1)])
        assert (takes.sum(axis=0) == 1).all()  # every input exactly once
        assert takes.sum(axis=1).max() - takes.sum(axis=1).min() <= 1  # even shares
        # another listing order deals the same stems to the same shards
        order = np.random.default_rng(n).permutation(len(stems))
        shuffled = [stems[k] for k in order]
        for i in range(1, n + 1):
            assert [shuffled[j] for j, t in enumerate(in_shard(shuffled, (i, n))) if t] == \
                [shuffled[j] for j in range(len(stems)) if takes[i - 1][order[j]]]


def test_sharded_completion_merges_into_one_directory(tiny_run, tmp_path):
    from inpaint.batch import complete_files
    from inpaint.config import SearchOptions
    from inpaint.images import expand_inputs
    from inpaint.masks import MaskSpec
    from inpaint.models import load_model

    src = write_faces(tmp_path / "in", n=6, size=(16, 16))
    (src / "broken.png").write_bytes(b"not an image")
    inputs = expand_inputs([src])
    model = load_model(tiny_run)
    out = tmp_path / "out"
    done, failed = [], []
    for i in (1, 2, 3):
        s = complete_files(inputs, out, model, mask=MaskSpec("center"),
                           options=SearchOptions(iters=2), batch_size=2, out_interval=1,
                           progress=False, shard=(i, 3))
        assert len(s.completed) + len(s.failed) + s.other_shards == len(inputs)
        done += s.completed
        failed += [p for p, _ in s.failed]
    assert sorted(done + failed) == sorted(map(str, inputs))  # each input once, by one shard
    assert failed == [str(src / "broken.png")]
    assert sorted(p.stem for p in (out / "completed").iterdir()) == [f"{i:03d}" for i in range(6)]
    # files every shard writes are named by shard; shard 1 keeps the plain progress/ names
    assert sorted(p.name for p in out.glob("log*.jsonl")) == [
        f"log.shard-{i}-of-3.jsonl" for i in (1, 2, 3)]
    records = [json.loads((out / f"run.shard-{i}-of-3.json").read_text()) for i in (1, 2, 3)]
    assert [r["shard"] for r in records] == [[1, 3], [2, 3], [3, 3]]
    progress = {p.name for p in (out / "progress").iterdir()}
    assert {"0000.png", "shard2_0000.png", "shard3_0000.png"} <= progress
    # a shard re-run finds its share done
    s = complete_files(inputs, out, model, mask=MaskSpec("center"), options=SearchOptions(iters=2),
                       progress=False, shard=(2, 3))
    assert s.completed == [] and len(s.skipped) == 2


@pytest.mark.parametrize("value", ["0/3", "4/3", "1", "a/b", "2/0"])
def test_bad_shard_is_a_usage_error(value, tmp_path):
    from inpaint.cli import cli

    write_faces(tmp_path / "in", n=1)
    r = CliRunner().invoke(cli, ["complete", str(tmp_path / "in"), "--outDir", str(tmp_path / "o"),
                                 "--shard", value])
    assert r.exit_code == 2 and "I/N" in r.output, r.output


def test_cli_shard_reports_its_share(tiny_run, tmp_path):
    from inpaint.cli import cli

    src = write_faces(tmp_path / "in", n=3, size=(16, 16))
    r = CliRunner().invoke(cli, ["complete", str(src), "--outDir", str(tmp_path / "o"), "--model",
                                 str(tiny_run), "--iters", "1", "--shard", "2/2", "-q"])
    assert r.exit_code == 0, r.output
    assert "completed 1, already done 0, failed 0" in r.output
    assert "(shard 2/2; 2 inputs left to the others)" in r.output


# ----------------------------------------------------------------------------- the subprocesses


def _mirrored(out: Path) -> dict:
    """Train the tiny model 12 steps on one device, on 2 mirrored CPU replicas, and switching
    from one to the other at each epoch; measure how replica copies of batch-norm moving means drift
    with and without synchronisation. Prints the measurements as JSON."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from inpaint.config import apply_overrides
    from inpaint.train import make_strategy, prepare_run_dir, train

    data = write_faces(out / "faces", n=N_IMAGES)
    stages = {"one-device": [("default", EPOCHS)], "mirrored": [("mirrored", EPOCHS)],
              "switching": [("default", 1), ("mirrored", 2), ("default", 3)]}
    for name, runs in stages.items():
        for strategy, epochs in runs:
            cfg = apply_overrides(tiny_config(), [f"train.strategy={strategy}",
                                                  f"train.epochs={epochs}"])
            prepare_run_dir(out / name, cfg)
            train(data, out / name, cfg, progress=False)
    report = {"replicas": json.loads((out / "mirrored" / "run.json").read_text())["replicas"],
              "moving_mean_drift": {}}
    # One batch norm layer on the two halves of a batch (the GAN shows the same: its replica
    # copies 0.007 apart after 3 steps, its losses off the one-device ones by 1e-2).
    import keras

    strategy = make_strategy("mirrored")
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    halves = strategy.experimental_distribute_values_from_function(
        lambda ctx: x[2 * ctx.replica_id_in_sync_group:2 * ctx.replica_id_in_sync_group + 2])
    for synced in (False, True):
        with strategy.scope():
            bn = keras.layers.BatchNormalization(synchronized=synced)
            bn.build((None, 5))
        tf.function(lambda v, bn=bn: strategy.run(lambda h: bn(h, training=True), args=(v,)))(
            halves)
        a, b = bn.moving_mean.value.values  # the two replicas' copies
        drift = float(np.abs(a.numpy() - b.numpy()).max())
        report["moving_mean_drift"]["synchronised" if synced else "unsynchronised"] = drift
    return report


def _mirrored_r1(out: Path) -> None:
    """The tiny model with R1 every other step, on one device and on 2 mirrored CPU replicas."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from inpaint.config import apply_overrides
    from inpaint.train import prepare_run_dir, train

    data = write_faces(out / "faces", n=N_IMAGES)
    for name, strategy in (("one-device", "default"), ("mirrored", "mirrored")):
        cfg = apply_overrides(tiny_config(), [f"train.strategy={strategy}",
                                              f"train.epochs={EPOCHS}", "train.r1_gamma=0.2",
                                              "train.r1_every=2"])
        prepare_run_dir(out / name, cfg)
        train(data, out / name, cfg, progress=False)


def _worker(out: Path, index: int, epochs: int) -> None:
    """One worker of a MultiWorkerMirroredStrategy run (TF_CONFIG from the environment), through
    the CLI; then its weights, as this worker holds them, into out/weights-<index>.npz."""
    from inpaint import train as training
    from inpaint.cli import cli

    made = []

    class Recorded(training.GANTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    training.GANTrainer = Recorded
    try:
        cli.main(["train", "--dataset", str(out / "faces"), "--out", str(out / "run"),
                  "--config", str(ROOT / "configs" / "tiny.toml"), "--strategy", "multi-worker",
                  "--epochs", str(epochs), "-q"], prog_name="inpaint")
    except SystemExit as exc:
        if exc.code:
            raise
    weights = made[-1].generator.weights + made[-1].discriminator.weights
    np.savez(out / f"weights-{index}.npz", *[v.numpy() for v in weights])


if __name__ == "__main__":
    mode, where = sys.argv[1], Path(sys.argv[2])
    if mode == "mirrored":
        print(json.dumps(_mirrored(where)))
    elif mode == "mirrored-r1":
        _mirrored_r1(where)
    elif mode == "worker":
        _worker(where, int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown mode {mode}")
