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
    paired_differences,
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
    assert set(res) == {"completed", "blended", "mean_fill", "harmonic", "seconds_per_image",
                        "iterations", "per_image"}
    assert res["iterations"] == 3
    assert res["completed"]["n"] == 3 and np.isfinite(res["blended"]["psnr"])
    # the per-face scores are the ones the means summarise, in the order of the stems
    per = res["per_image"]
    assert per["stems"] == ["a", "b", "c"]
    for method in ("completed", "blended"):
        for metric in ("psnr", "ssim", "hole_l1", "detail"):
            assert len(per[method][metric]) == 3
            assert np.mean(per[method][metric]) == pytest.approx(res[method][metric])
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


def _report(stems, **scores):
    """A minimal evaluate report: one mask, the blended method's per-face `scores`."""
    per = {m: list(v) for m, v in scores.items()}
    summary = {m: float(np.mean([x for x in v if np.isfinite(x)])) for m, v in per.items()}
    return {"results": {"center": {"blended": summary,
                                   "per_image": {"stems": list(stems), "blended": per}}}}


def test_paired_differences_mean_interval_and_faces_better():
    stems = [f"{i:03d}" for i in range(6)]
    before = _report(stems, psnr=[20, 21, 22, 23, 24, float("inf")], ssim=[0.5] * 6,
                     hole_l1=[10, 10, 10, 10, 10, 10], detail=[-1] * 6)
    after = _report(stems, psnr=[21, 21.5, 23, 23, 25, 30], ssim=[0.6] * 6,
                    hole_l1=[9, 11, 9, 9, 10, 8], detail=[-1] * 6)
    d = paired_differences(before, after)["center"]
    # PSNR: the pair with an infinite score is left out; differences 1, .5, 1, 0, 1
    assert d["psnr"]["n"] == 5 and d["psnr"]["mean"] == pytest.approx(0.7)
    se = np.std([1, 0.5, 1, 0, 1], ddof=1) / np.sqrt(5)
    assert d["psnr"]["se"] == pytest.approx(se)
    assert d["psnr"]["low"] == pytest.approx(0.7 - 1.96 * se)
    assert d["psnr"]["better"] == 4
    assert d["hole_l1"]["better"] == 4  # lower is better for the hole's L1
    assert d["ssim"]["mean"] == pytest.approx(0.1) and d["ssim"]["se"] == pytest.approx(0)
    assert d["detail"]["better"] == 0 and d["detail"]["mean"] == 0


def test_paired_differences_refuse_other_faces_and_old_reports():
    a = _report(["a", "b"], psnr=[1, 2], ssim=[1, 1], hole_l1=[1, 1], detail=[0, 0])
    b = _report(["a", "c"], psnr=[1, 2], ssim=[1, 1], hole_l1=[1, 1], detail=[0, 0])
    with pytest.raises(ValueError, match="different faces"):
        paired_differences(a, b)
    del b["results"]["center"]["per_image"]
    with pytest.raises(ValueError, match="no per-face scores"):
        paired_differences(a, b)


def test_compare_script_on_two_cli_reports(tiny_run, tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    src = write_faces(tmp_path / "in", n=3, size=(16, 16))
    for name, iters in (("a", "1"), ("b", "4")):
        r = CliRunner().invoke(cli, ["evaluate", str(src), "--model", str(tiny_run), "--iters",
                                     iters, "--mask-type", "center", "--json",
                                     str(tmp_path / f"{name}.json"), "-q"])
        assert r.exit_code == 0, r.output
    run = [sys.executable, str(ROOT / "scripts" / "compare_evals.py")]
    out = subprocess.run([*run, str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("| center |") == 4 and "of 3 |" in out.stdout
    (tmp_path / "bad.json").write_text("[1, 2]")
    out = subprocess.run([*run, str(tmp_path / "a.json"), str(tmp_path / "bad.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "not an inpaint evaluate report" in out.stderr
    assert "Traceback" not in out.stderr
