import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inpaint.cli import cli
from inpaint.complete import (
    LatentSearch,
    MaskSpec,
    SearchOptions,
    complete,
    complete_files,
    output_stems,
)
from inpaint.masks import build_mask
from inpaint.models import load_model

from .conftest import write_faces


@pytest.fixture(scope="module")
def model(tiny_run):
    return load_model(tiny_run)


def faces(n=3, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_completed_keeps_known_pixels_exactly(model):
    images = faces()
    masks = np.stack([build_mask("center", 16)] * 3)
    r = complete(model.generator, model.discriminator, images, masks,
                 options=SearchOptions(iters=3))
    known = masks > 0.5
    assert (r.completed[known] == images[known]).all()
    assert (r.blended[known] == images[known]).all()
    assert not (r.completed[~known] == images[~known]).all()
    assert r.losses["total"].shape == (4, 3) and r.z.shape == (3, 8)
    np.testing.assert_allclose(r.losses["total"],
                               r.losses["contextual"] + 0.1 * r.losses["perceptual"], rtol=1e-5)


def test_momentum_update_matches_the_formula(model):
    opts = SearchOptions(iters=0, optimizer="momentum", lr=0.01, momentum=0.9)
    search = LatentSearch(model.generator, model.discriminator, opts)
    import tensorflow as tf

    z = tf.constant(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 8)), tf.float32)
    v = tf.constant(np.random.default_rng(1).normal(0, 0.01, (2, 8)), tf.float32)
    target = tf.constant(np.zeros((2, 16, 16, 3)), tf.float32)
    w = tf.ones((2, 16, 16))
    shift = tf.zeros((2, 2))
    with tf.GradientTape() as tape:
        tape.watch(z)
        objective = tf.reduce_sum(search._losses(z, shift, target, w)[1])
    g = tape.gradient(objective, z).numpy()
    state = dict(search.initial_state(z.numpy()), v=v)
    new = search._step(state, target, w)[0]
    v_expected = 0.9 * v.numpy() - 0.01 * g
    np.testing.assert_allclose(new["v"].numpy(), v_expected, rtol=1e-4, atol=1e-7)
    z_expected = np.clip(z.numpy() - 0.9 * v.numpy() + 1.9 * v_expected, -1, 1)
    np.testing.assert_allclose(new["z"].numpy(), z_expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_z_stays_in_the_box_and_loss_falls(model, optimizer):
    images = faces(2)
    masks = np.stack([build_mask("left", 16)] * 2)
    r = complete(model.generator, model.discriminator, images, masks,
                 options=SearchOptions(iters=30, optimizer=optimizer, lr=0.5 if optimizer ==
                                       "adam" else 0.05))
    assert np.abs(r.z).max() <= 1.0
    assert (np.abs(r.z) == 1.0).any()  # a large step must have hit the box and been clipped
    assert (r.losses["total"][-1] < r.losses["total"][0]).all()


def test_restarts_choose_the_lowest_loss(model):
    images = faces(2)
    masks = np.stack([build_mask("center", 16)] * 2)
    opts = SearchOptions(iters=5, restarts=3, seed=4)
    r = complete(model.generator, model.discriminator, images, masks, options=opts)
    # each restart alone, from the same starting points
    from inpaint.complete import initial_z

    z0 = initial_z(2, 3, 8, seed=4)
    search = LatentSearch(model.generator, model.discriminator, SearchOptions(iters=5))
    from inpaint.images import to_float
    from inpaint.masks import context_weights

    _, _, hist, _ = search.run(np.repeat(to_float(images), 3, 0),
                            np.repeat(context_weights(masks), 3, 0), z0)
    final = hist["total"][-1].reshape(2, 3)
    np.testing.assert_allclose(r.losses["total"][-1], final.min(axis=1), rtol=1e-5)
    assert (final.argmin(axis=1) != 0).any()  # the winner is not simply the first start


def test_results_do_not_depend_on_the_batch(model):
    images = faces(3)
    masks = np.stack([build_mask("center", 16)] * 3)
    seeds = [[0, i] for i in range(3)]
    opts = SearchOptions(iters=5)
    whole = complete(model.generator, model.discriminator, images, masks, options=opts,
                     seeds=seeds)
    alone = complete(model.generator, model.discriminator, images[2:], masks[2:], options=opts,
                     seeds=seeds[2:])
    np.testing.assert_allclose(whole.z[2], alone.z[0], atol=1e-5)


def test_output_stems_are_unique_and_safe(tmp_path):
    assert output_stems([tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg", "..png"]) == [
        "x", "x-2", "image"]


def test_files_are_written_and_resume_skips(model, tmp_path):
    src = write_faces(tmp_path / "in", n=3, size=(16, 16))
    (src / "broken.png").write_bytes(b"junk")
    inputs = sorted(src.iterdir())
    out = tmp_path / "out"
    opts = SearchOptions(iters=4)
    s = complete_files(inputs, out, model, mask=MaskSpec("center"), options=opts, batch_size=2,
                       out_interval=2, progress=False)
    assert len(s.completed) == 3 and [p for p, _ in s.failed] == [str(src / "broken.png")]
    for sub in ("completed", "blended", "generated", "masked"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["000.png", "001.png", "002.png"]
    assert sorted(p.name for p in (out / "progress").iterdir()) == [
        "0000.png", "0002.png", "0004.png", "b001_0000.png", "b001_0002.png", "b001_0004.png"]
    assert len(list((out / "hats").iterdir())) == 6
    assert sorted(p.name for p in (out / "frames" / "002").glob("*.png")) == [
        "0000.png", "0002.png", "0004.png"]
    assert sorted(p.name for p in (out / "frames" / "002" / "generated").iterdir()) == [
        "0000.png", "0002.png", "0004.png"]  # G(z) of each frame, for make-gif to blend
    mask_file = np.asarray(Image.open(out / "masks" / "001.png"))
    assert (mask_file == np.where(build_mask("center", 16) > 0.5, 255, 0)).all()
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 5 and {"total", "contextual", "perceptual", "iter"} <= set(lines[0])
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["iters"] == 4 and run["model"]["sha256"]
    # known pixels in completed/ are bit-exact copies of the input
    m = build_mask("center", 16) > 0.5
    inp = np.asarray(Image.open(src / "001.png"))
    assert (np.asarray(Image.open(out / "completed" / "001.png"))[m] == inp[m]).all()
    before = (out / "completed" / "000.png").stat().st_mtime_ns
    s2 = complete_files(inputs, out, model, mask=MaskSpec("center"), options=opts,
                        progress=False)
    assert len(s2.skipped) == 3 and s2.completed == []
    assert (out / "completed" / "000.png").stat().st_mtime_ns == before


def _ink(region):
    """Whether a region of a white sheet has text or picture on it."""
    return (region < 128).any()


@pytest.mark.parametrize("blend", [True, False])
def test_sheet_magnifies_faces_and_labels_columns_and_files(model, tmp_path, blend):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    out = tmp_path / "out"
    complete_files(sorted(src.iterdir()), out, model, mask=MaskSpec("center"),
                   options=SearchOptions(iters=2), blend_result=blend, progress=False)
    sheet = np.asarray(Image.open(out / "sheet.png"))
    tile, pad = 192, 4  # 16-px faces magnified 12 times: at least 192 px
    ncols = 5 if blend else 4  # masked, G(z), completed, [blended,] original
    assert sheet.shape[1] == tile + ncols * (tile + pad) + pad  # file names, then the columns
    header = sheet.shape[0] - 2 * (tile + pad) - pad
    assert 20 <= header <= 60
    for c in range(ncols):
        left = tile + pad + c * (tile + pad)
        assert _ink(sheet[:header, left:left + tile]), f"no title over column {c}"
    for r, name in enumerate(["000.png", "001.png"]):
        top = header + r * (tile + pad)
        assert _ink(sheet[top:top + tile, :tile]), f"no file name on row {r}"
        original = np.asarray(Image.open(src / name))
        left = tile + pad + (ncols - 1) * (tile + pad)
        shown = sheet[top:top + tile, left:left + tile]
        assert (shown == np.repeat(np.repeat(original, 12, 0), 12, 1)).all()
        completed = np.asarray(Image.open(out / "completed" / name))
        left = tile + pad + 2 * (tile + pad)
        assert (sheet[top:top + tile:12, left:left + tile:12] == completed).all()


def test_sheet_scale_can_be_chosen_and_shrinks_for_many_images():
    from inpaint.complete import SHEET_MAX_PIXELS, sheet_scale_for

    assert sheet_scale_for(64, 12, 5) == 3 and sheet_scale_for(16, 2, 5) == 12
    assert sheet_scale_for(64, 400, 5) < 3  # 400 rows at 192 px would be 94 Mpx
    assert 400 * 6 * (64 * sheet_scale_for(64, 400, 5)) ** 2 <= SHEET_MAX_PIXELS
    assert sheet_scale_for(64, 100_000, 5) == 1


def test_other_sizes_are_resized_with_one_warning_naming_the_fix(model, tmp_path, caplog):
    src = write_faces(tmp_path / "in", n=3, size=(24, 24))
    with caplog.at_level("WARNING"):
        s = complete_files(sorted(src.iterdir()), tmp_path / "out", model,
                           mask=MaskSpec("center"), options=SearchOptions(iters=1),
                           progress=False)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING" and r.name.startswith("inpaint")]
    assert len(s.resized) == 3 and len(warnings) == 1
    assert "3 of 3 images are not 16x16" in warnings[0] and "is 24x24" in warnings[0]
    assert "inpaint align` fit this model with `--size 16`" in warnings[0]


def test_lowres_and_full_masks(model, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    for kind in ("lowres", "full", "grid", "random"):
        out = tmp_path / kind
        complete_files(sorted(src.iterdir()), out, model, mask=MaskSpec(kind),
                       options=SearchOptions(iters=2), progress=False)
        assert (out / "completed" / "000.png").exists()
    # full: every pixel is known, so completed is the input itself
    assert (np.asarray(Image.open(tmp_path / "full" / "completed" / "000.png"))
            == np.asarray(Image.open(src / "000.png"))).all()


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_complete_exit_codes(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    r = run_cli("complete", src, "--outDir", tmp_path / "o", "--model", tiny_run,
                "--iters", 2, "--maskType", "right", "-q")
    assert r.exit_code == 0, r.output
    assert "completed 2" in r.output
    (src / "bad.png").write_bytes(b"x")
    r = run_cli("complete", src, "--out-dir", tmp_path / "o", "--model", tiny_run, "--iters", 2,
                "--maskType", "right", "-q")
    assert r.exit_code == 1 and "already done 2, failed 1" in r.output
    assert "Traceback" not in r.output
    r = run_cli("complete", src, "--outDir", tmp_path / "o2", "--model", tmp_path / "nope")
    assert r.exit_code == 1 and "does not exist" in r.output
    r = run_cli("complete", src, "--outDir", tmp_path / "o3", "--model", tiny_run,
                "--mask-box", "1,2,3")
    assert r.exit_code == 2 and "X,Y,W,H" in r.output
    r = run_cli("complete", src, "--outDir", tmp_path / "o4", "--model", tiny_run,
                "--optimizer", "sgd")
    assert r.exit_code == 2
    mask = tmp_path / "m.png"
    Image.new("L", (7, 7), 255).save(mask)
    r = run_cli("complete", src / "000.png", "--outDir", tmp_path / "o5", "--model", tiny_run,
                "--mask", mask, "-q")
    assert r.exit_code == 1 and "m.png is 7x7" in r.output


def blob_networks(size=32):
    """G(z) = a smooth off-centre blob whatever z is, D = a constant: the only thing a search
    can fit is the translation."""
    import keras

    yy, xx = np.mgrid[:size, :size].astype("float32")
    blob = 1.0 / (1 + ((yy - 14) / 4) ** 2) / (1 + ((xx - 17) / 5) ** 2)
    image = np.repeat((2 * blob - 1)[..., None], 3, axis=-1)
    z = keras.Input((8,))
    dense = keras.layers.Dense(size * size * 3, kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant(image.ravel()))
    g = keras.Model(z, keras.layers.Reshape((size, size, 3))(dense(z)))
    x = keras.Input((size, size, 3))
    d = keras.Model(x, keras.layers.Dense(1, kernel_initializer="zeros")(
        keras.layers.Flatten()(x)))
    return g, d


def test_optimize_shift_finds_a_known_translation():
    import tensorflow as tf

    from inpaint.images import to_uint8
    from inpaint.ops import translate

    g, d = blob_networks()
    true_shift = np.array([[1.5, -2.0], [-2.5, 0.75]], "float32")
    target = to_uint8(translate(g(np.zeros((2, 8), "float32")), tf.constant(true_shift),
                                "bilinear").numpy())
    masks = np.stack([build_mask("center", 32)] * 2)
    opts = SearchOptions(iters=200, lam=0.0, context_weighting="none", optimize_shift=True,
                         shift_lr=0.05)
    r = complete(g, d, target, masks, options=opts)
    np.testing.assert_allclose(r.shifts, true_shift, atol=0.1)
    plain = complete(g, d, target, masks, options=SearchOptions(iters=1, lam=0.0))
    assert (r.losses["contextual"][-1] < 0.5 * plain.losses["contextual"][-1]).all()
    # the shift is bounded by max_shift
    r = complete(g, d, target, masks, options=SearchOptions(
        iters=100, lam=0.0, optimize_shift=True, max_shift=1.0, shift_lr=0.1))
    assert np.abs(r.shifts).max() <= 1.0 + 1e-6
