import json

import numpy as np
import pytest
from click.testing import CliRunner

from inpaint.cli import cli
from inpaint.config import SearchOptions
from inpaint.evaluate import (
    QUANTISATION_ENERGY,
    detail_ratio,
    evaluate_mask,
    harmonic_baseline,
    hole_l1,
    markdown_table,
    mean_fill,
    psnr,
    ssim,
)
from inpaint.masks import build_mask
from inpaint.models import load_model

from .conftest import write_faces


def test_identical_images():
    a = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert psnr(a, a) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0)
    assert hole_l1(a, a, build_mask("center", 16)) == 0.0


def test_detail_ratio_known_answers():
    q = QUANTISATION_ENERGY
    mask = build_mask("center", 32)  # a square hole: as many horizontal pairs as vertical ones
    ramp = np.broadcast_to((np.arange(32) * 8)[None, :, None], (32, 32, 3)).astype(np.uint8)
    assert detail_ratio(ramp, ramp, mask) == 0.0
    # half the slope: a quarter of the squared differences; vertical pairs have none
    half = np.broadcast_to((np.arange(32) * 4)[None, :, None], (32, 32, 3)).astype(np.uint8)
    assert detail_ratio(ramp, half, mask) == pytest.approx(np.log2((16 / 2 + q) / (64 / 2 + q)))
    # a flat fill, whatever its seam with the surroundings, has no detail inside the hole
    flat = ramp.copy()
    flat[mask < 0.5] = 7
    assert detail_ratio(ramp, flat, mask) == pytest.approx(np.log2(q / (32 + q)))
    # twice the detail of the truth scores above 0
    assert detail_ratio(half, ramp, mask) > 1.9


def test_constant_offset_known_answers():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a + np.uint8(10)
    # MSE = 100 -> PSNR = 10 log10(255^2 / 100)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 100))
    assert hole_l1(a, b, build_mask("left", 16)) == pytest.approx(10.0)
    # flat images: SSIM reduces to the luminance term (2 mu_a mu_b + c1) / (mu_a^2 + mu_b^2 + c1)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1))


def test_ssim_matches_a_direct_window_computation():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (12, 12, 1), dtype=np.uint8)
    b = rng.integers(0, 256, (12, 12, 1), dtype=np.uint8)
    x = np.arange(11) - 5.0
    g = np.exp(-x ** 2 / 4.5)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(2):
        for j in range(2):
            pa = a[i:i + 11, j:j + 11, 0].astype(float)
            pb = b[i:i + 11, j:j + 11, 0].astype(float)
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * pa * pa).sum() - ma ** 2, (w * pb * pb).sum() - mb ** 2
            cov = (w * pa * pb).sum() - ma * mb
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1)
                                                              * (va + vb + c2)))
    assert ssim(a, b) == pytest.approx(np.mean(vals), rel=1e-9)


def test_baselines_fill_only_the_hole():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    m = build_mask("center", 16)
    for out in (mean_fill(img, m), harmonic_baseline(img, m)):
        assert (out[m > 0.5] == img[m > 0.5]).all()
    mf = mean_fill(img, m)
    np.testing.assert_allclose(mf[8, 8], np.round(img[m > 0.5].mean(0)), atol=0.5)


def test_evaluate_on_the_tiny_model(tiny_run):
    model = load_model(tiny_run)
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    res = evaluate_mask(model, images, ["a", "b", "c"], "center", SearchOptions(iters=3))
    assert set(res) == {"completed", "blended", "mean_fill", "harmonic", "seconds_per_image"}
    assert res["completed"]["n"] == 3 and np.isfinite(res["blended"]["psnr"])
    table = markdown_table({"center": res})
    assert table.count("\n") == 5 and "| center | harmonic |" in table


def test_cli_evaluate_writes_json(tiny_run, tmp_path):
    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    r = CliRunner().invoke(cli, ["evaluate", str(src), "--model", str(tiny_run), "--iters", "2",
                                 "--mask-type", "center", "--mask-type", "left",
                                 "--json", str(tmp_path / "r.json"), "-q"])
    assert r.exit_code == 0, r.output
    assert "| left | completed |" in r.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["results"]) == {"center", "left"} and data["images"] == 2
