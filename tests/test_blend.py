import numpy as np
import pytest

from inpaint.blend import harmonic_fill, poisson_blend


def test_guidance_with_the_targets_gradients_gives_back_the_target():
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 255, (20, 24, 3))
    mask = np.ones((20, 24))
    mask[5:15, 6:18] = 0
    # the same image shifted by a constant has the same gradients: the hole is recovered
    out = poisson_blend(target, target + 37.0, mask)
    np.testing.assert_allclose(out, target, atol=1e-4)


def test_harmonic_fill_of_a_linear_ramp_is_exact():
    yy, xx = np.mgrid[:16, :16].astype(float)
    target = np.stack([2 * xx + 3 * yy, xx - yy, 5 + 0 * xx], axis=-1)
    mask = np.ones((16, 16))
    mask[4:12, 3:13] = 0
    out = harmonic_fill(np.where(mask[..., None] > 0, target, 0.0), mask)
    np.testing.assert_allclose(out, target, atol=1e-4)


def test_known_pixels_are_unchanged_and_hole_touching_the_border():
    rng = np.random.default_rng(1)
    target, source = rng.uniform(0, 1, (2, 12, 12, 3))
    mask = np.ones((12, 12))
    mask[:, :6] = 0  # left half: the hole touches three borders (Neumann there)
    out = poisson_blend(target, source, mask)
    assert (out[:, 6:] == target[:, 6:]).all()
    # the solution satisfies the discrete Poisson equation at an interior hole pixel
    p = (5, 3)
    lap = lambda a: 4 * a[p] - a[4, 3] - a[6, 3] - a[5, 2] - a[5, 4]  # noqa: E731
    np.testing.assert_allclose(lap(out), lap(source), atol=1e-4)


def test_degenerate_masks():
    t = np.zeros((4, 4, 3))
    s = np.ones((4, 4, 3))
    assert (poisson_blend(t, s, np.ones((4, 4))) == t).all()  # nothing to fill
    assert (poisson_blend(t, s, np.zeros((4, 4))) == s).all()  # nothing known


@pytest.mark.parametrize("hole", ["centre", "two-holes-and-border"])
def test_direct_and_conjugate_gradient_solvers_agree(hole):
    rng = np.random.default_rng(2)
    target, source = rng.uniform(0, 255, (2, 40, 36, 3))
    mask = np.ones((40, 36))
    mask[10:30, 8:28] = 0
    if hole != "centre":
        mask[0:5, 30:] = 0  # a second hole in a corner (Neumann on two sides)
    direct = poisson_blend(target, source, mask, solver="direct")
    cg = poisson_blend(target, source, mask, solver="cg", tol=1e-12)
    # both solve the same SPD system; CG stops at a relative residual of 1e-12 on values of
    # order 255 * (condition number ~ hole width^2), far below 1e-6 grey levels
    np.testing.assert_allclose(direct, cg, atol=1e-6)
    assert (direct[mask > 0] == target[mask > 0]).all()
