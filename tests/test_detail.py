"""The photo-detail step (detail.py): known answers on synthetic photos, and its wiring into fill."""

import numpy as np
import pytest

from inpaint.config import SearchOptions
from inpaint.detail import DETAIL_MODES, SIGMA_PER_SCALE, lowpass, restore_detail
from inpaint.errors import UsageError
from inpaint.evaluate import gradient_energy
from inpaint.fill import fill_photo

from .conftest import ASTRONAUT, run_cli

SCALE = 4.0  # photo pixels per model pixel: low-pass sigma 2.8, windows 12 px
SIGMA = SIGMA_PER_SCALE * SCALE


def textured(seed: int = 0, n: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Seeded white noise (std 20 around 128) with a 48x48 hole in the middle."""
    truth = np.clip(128 + 20 * np.random.default_rng(seed).standard_normal((n, n, 3)), 0, 255)
    hole = np.zeros((n, n), bool)
    hole[56:104, 56:104] = True
    return truth, hole


def flat_guide(truth, hole):
    guide = truth.copy()
    guide[hole] = 128.0  # the smooth fill of a model that has no texture
    return guide


def test_flat_guide_gets_back_texture_of_the_truths_energy():
    truth, hole = textured()
    out = restore_detail(flat_guide(truth, hole), hole, SCALE, seed=1)
    mask = (~hole).astype(np.float32)  # 0 = hole, as evaluate's masks
    ratio = gradient_energy(out, mask) / gradient_energy(truth, mask)
    # The residual of white noise is the noise less its low-pass part (1 / (4 pi sigma^2) = 1% of
    # its variance at sigma 2.8); windows overlapping by half with squared weights summing to 1
    # keep an uncorrelated residual's variance; the sine windows' slope and the edge windows
    # left out cost a few per cent more. So about 0.95, and not the flat guide's 0.
    assert 0.8 < ratio < 1.2
    assert gradient_energy(flat_guide(truth, hole), mask) / gradient_energy(truth, mask) < 0.01


def test_the_step_adds_only_high_frequencies():
    truth, hole = textured()
    guide = flat_guide(truth, hole)
    out = restore_detail(guide, hole, SCALE, seed=1)
    added = out - guide
    low = lowpass(added, SIGMA)
    inner = np.zeros_like(hole)
    r = int(3 * SIGMA)  # the low-pass's reach: further in, no pixel of the known side counts
    inner[56 + r:104 - r, 56 + r:104 - r] = True
    # the projections leave the added residual's low-pass at about 1% of its amplitude (one
    # pass of subtracting the low-pass leaves what the Gaussian's tail and the hole's edge
    # put back; four passes); clipping to [0, 255] moves a few pixels by less than that
    assert np.abs(low[inner]).mean() < 0.05 * added[hole].std()
    assert added[hole].std() > 10  # and there is texture to speak of


def test_pixels_outside_the_hole_stay_bit_exact():
    truth, hole = textured()
    guide = flat_guide(truth, hole).astype(np.uint8)
    out = restore_detail(guide, hole, SCALE, seed=3)
    assert np.array_equal(out[~hole], guide[~hole].astype(np.float64))


def test_results_are_deterministic_for_a_seed():
    truth, hole = textured()
    guide = flat_guide(truth, hole)
    a, b = (restore_detail(guide, hole, SCALE, seed=7) for _ in range(2))
    c = restore_detail(guide, hole, SCALE, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_an_empty_hole_or_no_context_changes_nothing():
    truth, hole = textured()
    none = np.zeros_like(hole)
    assert np.array_equal(restore_detail(truth, none, SCALE), truth)
    everything = np.ones_like(hole)  # no known pixel to take detail from
    assert np.array_equal(restore_detail(truth, everything, SCALE), truth)


def test_strong_edges_are_not_copied_into_the_hole():
    truth, hole = textured()
    truth = 128 + (truth - 128) * 0.2  # faint skin texture, std 4
    truth[:, 20:23] = 255.0  # a bright frame line, far from the hole
    out = restore_detail(flat_guide(truth, hole), hole, SCALE, seed=1)
    assert out[hole].max() < 200  # the line's residual (about +100) never lands in the hole


def test_detail_is_taken_only_from_the_source_region():
    # stripes 4 px apart (far above the low-pass band): across the rows in the top half, across
    # the columns in the bottom half ("skin"), where the hole is; the same low-pass (128) everywhere
    n = 160
    y, x = np.mgrid[:n, :n]
    stripes = np.where(y < 80, np.cos(np.pi * y / 2), np.cos(np.pi * x / 2))
    truth = np.repeat((128 + 20 * stripes)[..., None], 3, -1)
    hole = np.zeros((n, n), bool)
    hole[96:144, 56:104] = True
    skin = y >= 80
    guide = flat_guide(truth, hole)

    def along(added):  # energy of the added texture's changes down the rows and along them
        inside = added[100:140, 60:100]
        return np.square(np.diff(inside, axis=0)).mean(), np.square(np.diff(inside, axis=1)).mean()

    anywhere = restore_detail(guide, hole, SCALE, seed=1) - guide
    from_skin = restore_detail(guide, hole, SCALE, seed=1, source=skin) - guide
    down, across = along(from_skin)
    # only the bottom's stripes copied (the sine windows' slopes give the 1% left down the rows)
    assert across > 100 and down < 0.02 * across
    down, across = along(anywhere)
    assert down > 0.04 * across  # offered both (seed 1: 7%), some of the top's arrive as well
    # a source holding no whole window adds nothing (the crop's hair or background would show)
    tiny = np.zeros_like(hole)
    tiny[0, 0] = True
    assert np.array_equal(restore_detail(guide, hole, SCALE, seed=1, source=tiny), guide)
    with pytest.raises(UsageError, match="source"):
        restore_detail(guide, hole, SCALE, source=skin[1:])


@pytest.mark.parametrize("image, hole, scale", [
    (np.zeros((10, 10)), np.zeros((10, 10), bool), 2.0),
    (np.zeros((10, 10, 3)), np.zeros((9, 10), bool), 2.0),
    (np.zeros((10, 10, 3)), np.zeros((10, 10), bool), float("nan")),
    (np.zeros((10, 10, 3)), np.zeros((10, 10), bool), 0.0),
])
def test_bad_arguments_are_usage_errors(image, hole, scale):
    with pytest.raises(UsageError):
        restore_detail(image, hole, scale)


def test_fill_detail_none_is_the_plain_fill_and_context_adds_to_it(tiny_model):
    from inpaint.align import AlignSettings, FaceAligner
    from inpaint.images import read_image

    photo, aligner = read_image(ASTRONAUT), FaceAligner(AlignSettings(size=16))
    opts = SearchOptions(iters=3)
    plain = fill_photo(photo, tiny_model, aligner, regions=["mouth"], options=opts, name="a",
                       detail="none")
    rich = fill_photo(photo, tiny_model, aligner, regions=["mouth"], options=opts, name="a",
                      detail="context")
    assert np.array_equal(plain.hole, rich.hole)
    assert np.array_equal(plain.image[~plain.hole], photo[~plain.hole])
    assert np.array_equal(rich.image[~rich.hole], photo[~rich.hole])
    assert not np.array_equal(plain.image[plain.hole], rich.image[rich.hole])
    assert rich.seconds["detail"] > 0 and plain.seconds["detail"] == 0
    with pytest.raises(UsageError):
        fill_photo(photo, tiny_model, aligner, regions=["mouth"], options=opts, detail="sharp")


def test_cli_detail_choices(tmp_path):
    r = run_cli("fill", ASTRONAUT, "-o", tmp_path / "o", "--region", "mouth", "--detail", "x")
    assert r.exit_code == 2 and all(m in r.output for m in DETAIL_MODES)
    assert "--detail" in run_cli("fill", "--help").output
