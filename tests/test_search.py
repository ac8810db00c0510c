"""The pure latent search (inpaint.search): losses, updates, restarts, precision, shifts."""

import numpy as np
import pytest

from inpaint.config import SearchOptions
from inpaint.errors import InpaintError
from inpaint.masks import build_mask
from inpaint.search import Completer, LatentSearch, MultiCodeSearch, complete


@pytest.fixture
def model(tiny_model):
    return tiny_model


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
    new = search.step(state, target, w)[0]
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
    from inpaint.search import initial_z

    z0 = initial_z(2, 3, 8, seed=4)
    search = Completer((model.generator, model.discriminator), SearchOptions(iters=5)).search
    from inpaint.images import to_float
    from inpaint.masks import context_weights

    _, _, hist, _ = search.run(np.repeat(to_float(images), 3, 0),
                            np.repeat(context_weights(masks), 3, 0), z0)
    final = hist["total"][-1].reshape(2, 3)
    np.testing.assert_allclose(r.losses["total"][-1], final.min(axis=1), rtol=1e-5)
    assert (final.argmin(axis=1) != 0).any()  # the winner is not simply the first start


def test_the_door_decides_the_options_once_and_the_parts_behind_it_decide_nothing(model):
    from inpaint.config import DEFAULT_ITERS

    run = Completer(model, SearchOptions())
    assert run.options.iters == DEFAULT_ITERS["random"] and run.search.opts is run.options
    assert not run.from_encoder and run.image_size == 16
    with pytest.raises(ValueError, match="finished options"):  # iters undecided
        LatentSearch(model.generator, model.discriminator, SearchOptions())
    with pytest.raises(InpaintError, match="does not exist"):  # a path is a model directory
        Completer("no such model directory", SearchOptions())
    with pytest.raises(InpaintError, match="LoadedModel, a model directory or"):
        Completer(42, SearchOptions())


def test_complete_is_the_door_for_one_batch_of_a_model_or_its_networks(model):
    images = faces(2)
    masks = np.stack([build_mask("center", 16), build_mask("left", 16)])
    opts = SearchOptions(iters=3, restarts=2, seed=5, precision="float32")
    one = complete(model.generator, model.discriminator, images, masks, options=opts)
    for door in (Completer(model, opts), Completer((model.generator, model.discriminator), opts)):
        again = door(images, masks)
        np.testing.assert_array_equal(again.z, one.z)
        np.testing.assert_array_equal(again.blended, one.blended)
        np.testing.assert_array_equal(again.losses["total"], one.losses["total"])


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


def test_complete_computes_in_the_precision_of_its_options(model):
    from inpaint.models import network_policy

    images = faces(2)
    masks = np.stack([build_mask("center", 16)] * 2)
    r32 = complete(model.generator, model.discriminator, images, masks,
                   options=SearchOptions(iters=2, seed=3, precision="float32"),
                   blend_result=False)
    r16 = complete(model.generator, model.discriminator, images, masks,
                   options=SearchOptions(iters=2, seed=3, precision="bfloat16"),
                   blend_result=False)
    # the same starting points, G and D rounded to bfloat16: close, but not the float32 numbers
    first32, first16 = r32.losses["total"][0], r16.losses["total"][0]
    assert not np.array_equal(first32, first16)
    np.testing.assert_allclose(first16, first32, rtol=0.05)
    assert not np.array_equal(r32.generated, r16.generated)
    np.testing.assert_allclose(r16.generated, r32.generated, atol=0.1)
    assert r16.generated.dtype == np.float32
    # the door casts copies; the caller's networks stay as they were
    search = Completer((model.generator, model.discriminator),
                       SearchOptions(precision="bfloat16")).search
    assert network_policy(search.generator) == "mixed_bfloat16"
    assert network_policy(search.discriminator) == "mixed_bfloat16"
    assert network_policy(model.generator) == "float32"


def test_networks_already_in_the_precision_are_used_as_they_are(model):
    from inpaint.models import network_policy

    g16, d16 = model.networks("bfloat16")
    assert model.networks("bfloat16")[0] is g16  # cast once per model
    search = Completer((g16, d16), SearchOptions(precision="bfloat16")).search
    assert search.generator is g16 and search.discriminator is d16
    # float32 options with bfloat16 networks: the search computes in float32
    back = Completer((g16, d16), SearchOptions(precision="float32")).search
    assert network_policy(back.generator) == "float32"
    for a, b in zip(g16.get_weights(), back.generator.get_weights()):
        np.testing.assert_array_equal(a, b)


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


def test_auto_precision_searches_in_what_the_hardware_computes_natively(model, monkeypatch):
    from inpaint import hardware
    from inpaint.models import network_policy

    for native, policy in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(hardware, "native_bfloat16", lambda n=native: (n, "pretend"))
        search = Completer((model.generator, model.discriminator), SearchOptions()).search
        assert SearchOptions().precision == "auto"
        assert network_policy(search.generator) == policy


def test_finetune_fits_the_context_closer_keeps_known_pixels_and_leaves_the_model(model):
    images = faces(3)
    masks = np.stack([build_mask("center", 16)] * 3)
    before = [w.copy() for w in model.generator.get_weights()]
    opts = SearchOptions(iters=3, search="finetune", finetune_steps=5, finetune_lr=1e-3,
                         precision="float32")
    r = Completer(model, opts)(images, masks)
    tuned = r.losses["finetune_contextual"]
    assert tuned.shape == (6, 3)
    np.testing.assert_allclose(tuned[0], r.losses["contextual"][-1], rtol=1e-4)  # starts at z's
    assert (tuned[-1] < tuned[0]).all()
    known = masks > 0.5
    assert (r.completed[known] == images[known]).all() and (r.blended[known] == images[known]).all()
    for a, b in zip(before, model.generator.get_weights()):
        np.testing.assert_array_equal(a, b)  # the caller's generator is not tuned


def test_finetune_results_do_not_depend_on_the_batch(model):
    images = faces(3)
    masks = np.stack([build_mask("left", 16)] * 3)
    seeds = [[0, i] for i in range(3)]
    run = Completer(model, SearchOptions(iters=2, search="finetune", finetune_steps=3,
                                         finetune_lr=1e-3, precision="float32"))
    whole = run(images, masks, seeds=seeds)
    alone = run(images[2:], masks[2:], seeds=seeds[2:])
    # each image is tuned alone from the trained weights, so the batch only changes the z
    # search's float rounding (as test_results_do_not_depend_on_the_batch allows)
    np.testing.assert_allclose(whole.generated[2], alone.generated[0], atol=1e-4)
    np.testing.assert_allclose(whole.losses["finetune_total"][:, 2],
                               alone.losses["finetune_total"][:, 0], rtol=1e-4)


def test_multi_code_with_one_code_is_the_generator_itself(model):
    from inpaint.search import split_generator

    opts = SearchOptions(search="multi-code", codes=1, code_stage=1, precision="float32")
    search = Completer(model, opts).search
    assert isinstance(search, MultiCodeSearch)
    z = np.random.default_rng(1).uniform(-1, 1, (4, 8)).astype(np.float32)
    packed = search.pack(z[:, None])
    assert packed.shape == (4, search.z_dim) and search.z_dim == 8 + search.channels
    np.testing.assert_allclose(search.compose(packed).numpy(),
                               model.generator(z, training=False).numpy(), atol=1e-6)
    head, tail = split_generator(model.generator, 0)
    np.testing.assert_allclose(tail(head(z)).numpy(), model.generator(z).numpy(), atol=1e-6)
    with pytest.raises(Exception, match="code stage"):
        split_generator(model.generator, 9)


def test_multi_code_mixes_codes_by_channel_weights(model):
    opts = SearchOptions(search="multi-code", codes=3, code_stage=1, precision="float32")
    search = Completer(model, opts).search
    assert isinstance(search, MultiCodeSearch)
    codes = np.random.default_rng(2).uniform(-1, 1, (2, 3, 8)).astype(np.float32)
    packed = search.pack(codes)
    feats = search.head(codes.reshape(-1, 8)).numpy().reshape(2, 3, *search.head.output.shape[1:])
    expected = search.tail(feats.mean(axis=1)).numpy()  # weights 1/3 each: the mean
    np.testing.assert_allclose(search.compose(packed).numpy(), expected, atol=1e-5)


def test_multi_code_search_keeps_known_pixels_and_does_not_depend_on_the_batch(model):
    images = faces(3)
    masks = np.stack([build_mask("center", 16)] * 3)
    seeds = [[0, i] for i in range(3)]
    run = Completer(model, SearchOptions(iters=5, search="multi-code", codes=4,
                                         precision="float32"))
    whole = run(images, masks, seeds=seeds)
    alone = run(images[2:], masks[2:], seeds=seeds[2:])
    np.testing.assert_allclose(whole.z[2], alone.z[0], atol=1e-5)
    known = masks > 0.5
    assert (whole.completed[known] == images[known]).all()
    assert (whole.losses["total"][-1] < whole.losses["total"][0]).all()
    assert np.abs(whole.z).max() <= 1.0


@pytest.mark.parametrize("images, masks, why", [
    (faces().astype(np.float32) / 255, None, "uint8"),  # floats in [0, 1]: the wrong kind
    (faces(size=32), None, r"\(B, 16, 16, 3\)"),  # another model's size
    (faces()[..., 0], None, r"\(B, 16, 16, 3\)"),
    (faces(), np.full((3, 16, 16), 2.0), r"in \[0, 1\]"),
    (faces(), np.full((3, 16, 16), np.nan), r"in \[0, 1\]"),
    (faces(), np.ones((3, 16, 16, 1)), r"\(3, 16, 16\)"),
    (faces(), np.ones((2, 16, 16)), r"\(3, 16, 16\)"),
])
def test_completer_refuses_images_and_masks_of_the_wrong_kind(model, images, masks, why):
    from inpaint.errors import UsageError

    masks = np.stack([build_mask("center", 16)] * len(images)) if masks is None else masks
    with pytest.raises(UsageError, match=why):
        Completer(model, SearchOptions(iters=1))(images, masks)
