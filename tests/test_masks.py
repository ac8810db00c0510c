import numpy as np
import pytest
from PIL import Image

from inpaint.errors import MaskError
from inpaint.masks import (
    box_mask,
    build_mask,
    context_weights,
    find_mask_for,
    lowres,
    read_mask,
)


def test_center_mask_is_the_middle_half():
    m = build_mask("center", 64)
    assert m.dtype == np.float32 and m.shape == (64, 64)
    holes = np.argwhere(m == 0)
    assert holes.min(0).tolist() == [16, 16] and holes.max(0).tolist() == [47, 47]
    assert (m == 0).sum() == 32 * 32


@pytest.mark.parametrize("kind, missing", [
    ("left", (slice(None), slice(0, 8))), ("right", (slice(None), slice(8, 16))),
    ("top", (slice(0, 8), slice(None))), ("bottom", (slice(8, 16), slice(None)))])
def test_half_masks(kind, missing):
    m = build_mask(kind, 16)
    expected = np.ones((16, 16), np.float32)
    expected[missing] = 0
    assert (m == expected).all()


def test_random_mask_fraction_and_seed():
    a = build_mask("random", 64, missing_fraction=0.8, seed=[1, 2])
    b = build_mask("random", 64, missing_fraction=0.8, seed=[1, 2])
    c = build_mask("random", 64, missing_fraction=0.8, seed=[1, 3])
    assert (a == b).all() and not (a == c).all()
    assert abs((a == 0).mean() - 0.8) < 0.03


def test_grid_lowres_full():
    g = build_mask("grid", 8)
    assert np.argwhere(g == 1).tolist() == [[0, 0], [0, 4], [4, 0], [4, 4]]
    assert (build_mask("lowres", 8) == 0).all() and (build_mask("full", 8) == 1).all()
    with pytest.raises(MaskError, match="unknown mask type"):
        build_mask("circle", 8)


def test_box_mask_and_bounds():
    m = box_mask((1, 2, 3, 4), 8)
    assert (m == 0).sum() == 12 and m[2:6, 1:4].max() == 0
    with pytest.raises(MaskError, match="inside"):
        box_mask((6, 0, 4, 4), 8)


def test_yeh_weights_hand_computed_case():
    # 5x5 image, one unknown pixel in the centre, a 3x3 window
    m = np.ones((5, 5), np.float32)
    m[2, 2] = 0
    w = context_weights(m, window=3)
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = 1 / 9  # the centre's 8 neighbours see one unknown among 9 pixels
    expected[2, 2] = 0  # unknown pixels weigh nothing
    np.testing.assert_allclose(w, expected, atol=1e-7)
    # at a border the window counts only pixels inside the image: corner unknown, 2x2 window part
    m = np.ones((4, 4), np.float32)
    m[0, 0] = 0
    w = context_weights(m, window=3)
    assert w[0, 1] == pytest.approx(1 / 6) and w[1, 1] == pytest.approx(1 / 9)
    assert w[0, 0] == 0 and w[3, 3] == 0


def test_yeh_weights_without_holes_fall_back_to_the_mask():
    m = np.ones((2, 6, 6), np.float32)
    m[1, 2, 2] = 0
    w = context_weights(m)
    assert (w[0] == 1).all() and w[1].max() < 1


def test_read_mask_sizes_and_stems(tmp_path):
    arr = np.full((8, 8), 255, np.uint8)
    arr[2:4, 2:6] = 0
    Image.fromarray(arr).save(tmp_path / "face.png")
    m = read_mask(tmp_path / "face.png", 8)
    assert (m == 0).sum() == 8
    big = Image.fromarray(arr).resize((16, 16), Image.Resampling.NEAREST)
    big.save(tmp_path / "big.png")
    assert (read_mask(tmp_path / "big.png", 8, image_size=(16, 16)) == m).all()
    with pytest.raises(MaskError, match=r"big.png is 16x16; it must be 8x8"):
        read_mask(tmp_path / "big.png", 8)
    assert find_mask_for(tmp_path, "face") == tmp_path / "face.png"
    with pytest.raises(MaskError, match="no mask for image 'other'"):
        find_mask_for(tmp_path, "other")


def test_lowres_block_means():
    x = np.arange(16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)
    lr = lowres(x, 8)
    assert lr.shape == x.shape
    np.testing.assert_allclose(lr[0, 0], x[:8, :8].mean(axis=(0, 1)))
    assert (lr[:8, :8] == lr[0, 0]).all()
