"""Photo detail for a fill: the high frequencies a 64-pixel model cannot have, taken from the photo.

A face filled by `fill.py` is the model's 64x64 output enlarged to the photo's scale: its shape
and colours are right, but at 3-5x upsampling it has a tenth of the real skin's detail. The photo
has that detail all around the hole. Following contextual residual aggregation (Yi et al.,
"Contextual Residual Aggregation for Ultra High-Resolution Image Inpainting", CVPR 2020) and
guided upsampling (Zeng et al., ECCV 2020), the restoration here:

1. splits the face crop into a low-pass part L (a Gaussian of sigma = `SIGMA_PER_SCALE` x the
   upsampling factor, a little under the band a 64-pixel face can carry) and the residual
   R = crop - L;
2. describes every window of 2p x 2p pixels (p about 1.5x the upsampling) by its low-pass
   colours on a coarse 4x4 grid: in the hole these come from the fill, elsewhere from the photo;
3. for each window over the hole picks one of the `TOP_K` known windows (inside the face's skin
   where the caller says where that is: no hair or background) whose descriptions are
   nearest (a seeded draw, weighted by a softmax of the distance: attention at low resolution,
   without the repeated tiles a strict nearest match gives), and adds that window's residual,
   weighted by a sine window: windows overlap by half and the squares of the weights of
   overlapping windows sum to 1, so uncorrelated residuals keep their variance and no tile
   edges show;
4. removes what the added residual has below the low-pass band (a few alternating projections
   onto "zero low-pass" and "zero outside the hole"), so the result, low-passed, stays the fill.

Pure numpy/scipy; the work is bounded by the crop it is given (the face), not the photo. scipy is
imported where it is used, so the command line reads DETAIL_MODES without it (start-up speed).
"""

from __future__ import annotations

import numpy as np

from inpaint.errors import UsageError

DETAIL_MODES = ("context", "none")
# "context" restored the filled faces' detail from -3.3 to -0.9 (log2 gradient energy against the
# real photo, faces >= 150 px) at a hole PSNR 0.2 dB under "none" on the raw photos (docs/fill.md)
DEFAULT_DETAIL = "context"

SIGMA_PER_SCALE = 0.7  # low-pass sigma per upsampling factor: at the 64-px face's Nyquist
# frequency 0.5/s the Gaussian passes exp(-pi^2 sigma^2 / (2 s^2)) = 0.09 of the amplitude, so the
# model's own finest band is mostly handed to the photo's texture. Measured on the raw photos
# (faces >= 150 px, mouth and nose; sources in the skin): 0.5 gave detail -1.13 at -0.10 dB
# against no detail step, 0.7 -0.88 at -0.17 dB, 1.0 -0.74 at -0.23 dB, but with dark specks
# copied around the lips that the skin there does not have
PATCH_PER_SCALE = 1.5  # window stride p per upsampling factor (windows are 2p wide)
MIN_PATCH = 3          # pixels: the smallest stride, for faces at the model's own scale
TOP_K = 6              # candidate source windows per hole window
PROJECTIONS = 4        # alternating projections that remove the residual's low-pass part
GRID = 4               # each window is described by its low-pass colours on GRID x GRID points
EDGE_RMS = 2.5         # source windows whose residual RMS exceeds this x the median are edges
# (glasses frames, hair against skin, the face's outline): copied into a cheek they show as
# bright strands, so they are not offered


def check_detail(mode: str) -> str:
    """`mode` if it is one of DETAIL_MODES, else UsageError naming them."""
    if mode not in DETAIL_MODES:
        raise UsageError(f"detail must be one of {', '.join(DETAIL_MODES)}; got {mode!r}")
    return mode


def lowpass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of `image` (H, W, C) over its two spatial axes (float64)."""
    from scipy import ndimage

    return ndimage.gaussian_filter(np.asarray(image, np.float64), sigma=(sigma, sigma, 0),
                                   mode="reflect", truncate=3.0)


def _sine_window(n: int) -> np.ndarray:
    """(n, n) separable sine window: at half overlap the squares of neighbours sum to 1."""
    w = np.sin(np.pi * (np.arange(n) + 0.5) / n)
    return np.outer(w, w)


def _describe(low: np.ndarray, tops: np.ndarray, size: int) -> np.ndarray:
    """The low-pass colours of each window (top-left corners `tops` (N, 2) in padded
    coordinates, `size` wide) on a GRID x GRID lattice: (N, GRID*GRID*C)."""
    offs = ((np.arange(GRID) + 0.5) * size / GRID).astype(int)
    ys = tops[:, 0, None, None] + offs[None, :, None]
    xs = tops[:, 1, None, None] + offs[None, None, :]
    return low[ys, xs].reshape(len(tops), -1)


def _window_tops(shape: tuple[int, int], stride: int, pad: int) -> np.ndarray:
    """Top-left corners (padded coordinates) of a stride-`stride` lattice of windows."""
    ty = np.arange(0, shape[0] + pad, stride)
    tx = np.arange(0, shape[1] + pad, stride)
    return np.stack(np.meshgrid(ty, tx, indexing="ij"), -1).reshape(-1, 2)


def restore_detail(image: np.ndarray, hole: np.ndarray, scale: float, *, seed: int = 0,
                   source: np.ndarray | None = None) -> np.ndarray:
    """Add the photo's own high frequencies to the filled `hole` of `image`.

    image: (H, W, C) float or uint8 in [0, 255], the photo crop around a face with the fill in
    its hole; hole: (H, W) bool, True where the pixels were filled; scale: photo pixels per
    model pixel (>= 1 in practice; the low-pass and the windows follow it); seed: the draw
    among candidate windows; source: (H, W) bool, where detail may be taken from (the face's
    skin rather than the hair or background around it; default: the whole crop; if no window
    fits inside it, nothing is added: a face filled whole has no skin left to copy). Returns
    (H, W, C) float64 in [0, 255]: outside the hole exactly `image`; inside, `image` plus a
    residual whose low-pass part is about zero. An empty hole, or a crop with no known window to
    take detail from, comes back unchanged."""
    image = np.asarray(image, np.float64)
    hole = np.asarray(hole, bool)
    if image.ndim != 3 or hole.shape != image.shape[:2]:
        raise UsageError(f"restore_detail: image (H, W, C) and hole (H, W), got {image.shape} "
                         f"and {hole.shape}")
    if not np.isfinite(scale) or scale <= 0:
        raise UsageError(f"restore_detail: scale must be a positive number, got {scale}")
    if not hole.any():
        return image.copy()
    sigma = SIGMA_PER_SCALE * max(scale, 1.0)
    p = max(MIN_PATCH, int(round(PATCH_PER_SCALE * scale)))
    if source is not None and np.shape(source) != hole.shape:
        raise UsageError(f"restore_detail: source {np.shape(source)} must be shaped like the "
                         f"hole {hole.shape}")
    residual = _aggregate(image, hole, sigma, p, seed, source)
    if residual is None:
        return image.copy()
    return np.where(hole[..., None], np.clip(image + residual, 0.0, 255.0), image)


def _aggregate(image: np.ndarray, hole: np.ndarray, sigma: float, p: int, seed: int,
               source: np.ndarray | None = None):
    """The residual to add inside the hole, (H, W, C), or None without known windows."""
    from scipy import ndimage

    size, pad = 2 * p, 2 * p
    low = lowpass(image, sigma)
    padded = lambda a: np.pad(a, ((pad, pad), (pad, pad)) + ((0, 0),) * (a.ndim - 2),  # noqa: E731
                              mode="reflect" if a.dtype != bool else "constant")
    low_p, res_p = padded(low), padded(image - low)
    # a source window lies in the crop, away from the hole by the low-pass reach
    reach = int(np.ceil(2 * sigma))
    near = ndimage.binary_dilation(hole, iterations=reach) if reach else hole
    lattice = _window_tops(hole.shape, max(1, p // 2), pad)
    src = _windows_inside(~near if source is None else ~near & np.asarray(source, bool),
                          lattice, size, pad)
    src = _without_edges(res_p, src, size)
    hole_p = padded(hole)
    tgt = _window_tops(hole.shape, p, pad)
    touches = ndimage.maximum_filter(hole_p.astype(np.uint8), size=size, origin=-(size // 2))
    tgt = tgt[touches[tgt[:, 0], tgt[:, 1]] > 0]
    if not len(src) or not len(tgt):
        return None
    chosen = _choose(_describe(low_p, src, size), _describe(low_p, tgt, size), seed)
    acc = np.zeros_like(res_p)
    win = _sine_window(size)[..., None]
    for (ty, tx), (sy, sx) in zip(tgt, src[chosen]):
        acc[ty:ty + size, tx:tx + size] += win * res_p[sy:sy + size, sx:sx + size]
    added = acc[pad:-pad, pad:-pad]
    inside = hole[..., None]
    for _ in range(PROJECTIONS):  # keep only what lies above the low-pass band, in the hole
        added = np.where(inside, added - lowpass(added, sigma), 0.0)
    return added


def _windows_inside(allowed: np.ndarray, tops: np.ndarray, size: int, pad: int) -> np.ndarray:
    """The windows of `tops` (padded coordinates) lying wholly inside `allowed` (H, W)."""
    from scipy import ndimage

    ok = np.pad(allowed, pad, mode="constant", constant_values=False)
    ok_all = ndimage.minimum_filter(ok.astype(np.uint8), size=size, origin=-(size // 2)) > 0
    return tops[ok_all[tops[:, 0], tops[:, 1]]]


def _without_edges(res_p: np.ndarray, tops: np.ndarray, size: int) -> np.ndarray:
    """The source windows whose residual RMS is at most EDGE_RMS x the median window's."""
    if not len(tops):
        return tops
    energy = np.square(res_p).sum(-1)
    csum = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # summed-area table
    y, x = tops[:, 0], tops[:, 1]
    total = csum[y + size, x + size] - csum[y, x + size] - csum[y + size, x] + csum[y, x]
    rms = np.sqrt(np.maximum(total, 0.0) / (size * size))
    return tops[rms <= EDGE_RMS * np.median(rms)]


def _choose(src_feat: np.ndarray, tgt_feat: np.ndarray, seed: int) -> np.ndarray:
    """For each target description the index of one source, drawn among its TOP_K nearest with
    probabilities softmax(-d^2 / tau^2), tau the median nearest distance: (N_tgt,) int."""
    from scipy.spatial import cKDTree

    k = min(TOP_K, len(src_feat))
    dist, idx = cKDTree(src_feat).query(tgt_feat, k=k)
    dist, idx = dist.reshape(len(tgt_feat), k), idx.reshape(len(tgt_feat), k)
    tau = max(float(np.median(dist[:, 0])), 1e-6)
    logits = -np.square(dist / tau)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    u = np.random.default_rng(seed).random((len(tgt_feat), 1))
    pick = np.minimum((prob.cumsum(1) < u).sum(1), k - 1)
    return idx[np.arange(len(tgt_feat)), pick]
