"""Quality of completions: PSNR, SSIM and hole L1 against the whole faces, with two baselines.

All metrics take uint8 images `(H, W, 3)` (or batches) in [0, 255]:
- PSNR over the whole image, 10 log10(255^2 / MSE) (identical images: inf).
- SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, computed per
  channel over the valid region and averaged.
- L1 in the hole: mean absolute error over the unknown pixels, in [0, 255] grey levels.
- Detail ratio: log2 of the gradient energy inside the hole, output against truth (0: as much
  detail as the real face; a smooth fill scores far below 0). PSNR rewards blur; this does not.
Baselines on the same images and masks: mean-colour fill (the known pixels' mean colour) and
harmonic (membrane) fill, the Poisson solver with zero guidance.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from inpaint.blend import harmonic_fill
from inpaint.masks import MaskSpec, image_seed


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when identical)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (H, W) with the 1-D window g along both axes."""
    k = len(g)
    h, w = img.shape
    rows = sum(g[i] * img[i:h - k + 1 + i, :] for i in range(k))
    return sum(g[i] * rows[:, i:w - k + 1 + i] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two uint8 images (H, W, C), H and W >= 11."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    g = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]
        mx, my = _filter_valid(x, g), _filter_valid(y, g)
        sxx = _filter_valid(x * x, g) - mx * mx
        syy = _filter_valid(y * y, g) - my * my
        sxy = _filter_valid(x * y, g) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
        vals.append(s.mean())
    return float(np.mean(vals))


def hole_l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference over the hole (mask == 0) in grey levels; 0 if no hole."""
    hole = np.asarray(mask) < 0.5
    if not hole.any():
        return 0.0
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(d[hole].mean())


# Gradient energy of pure uint8 rounding noise: a forward difference of two independent
# rounding errors (each uniform, variance 1/12) has variance 1/6 grey levels^2. It is the floor
# added to both energies, so a flat fill gives a large negative but finite ratio.
QUANTISATION_ENERGY = 1.0 / 6.0


def gradient_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared forward difference (grey levels^2, over channels and both axes) of the pairs
    of neighbouring pixels that both lie in the hole (mask == 0); 0 if there are none. Pairs
    across the hole's border are left out, so a seam does not count as detail."""
    x = np.asarray(image, np.float64)
    hole = np.asarray(mask) < 0.5
    sq = []
    for axis in (0, 1):
        n = x.shape[axis]
        a, b = np.take(x, range(n - 1), axis), np.take(x, range(1, n), axis)
        both = np.take(hole, range(n - 1), axis) & np.take(hole, range(1, n), axis)
        sq.append(((a - b) ** 2)[both])
    sq = np.concatenate(sq)
    return float(sq.mean()) if sq.size else 0.0


def detail_ratio(truth: np.ndarray, result: np.ndarray, mask: np.ndarray) -> float:
    """log2 of the hole's gradient energy in `result` over that in `truth` (uint8 images
    (H, W, C), mask (H, W) with 0 = hole): 0 = as detailed as the truth, -1 = half its
    gradient energy. Both energies include the uint8 rounding floor QUANTISATION_ENERGY."""
    out = gradient_energy(result, mask) + QUANTISATION_ENERGY
    ref = gradient_energy(truth, mask) + QUANTISATION_ENERGY
    return float(np.log2(out / ref))


def mean_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Baseline: the hole painted with the known pixels' mean colour. uint8 -> uint8."""
    known = np.asarray(mask) > 0.5
    colour = image[known].mean(axis=0) if known.any() else np.full(3, 127.5)
    out = image.copy()
    out[~known] = np.clip(np.round(colour), 0, 255).astype(np.uint8)
    return out


def harmonic_baseline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Baseline: the smoothest fill of the hole from its border. uint8 -> uint8."""
    known = np.asarray(mask) > 0.5
    if not known.any():
        return mean_fill(image, mask)
    filled = harmonic_fill(image.astype(np.float64), mask)
    return np.where(known[..., None], image, np.clip(np.round(filled), 0, 255)).astype(np.uint8)


@dataclass
class MethodScores:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    hole_l1: list[float] = field(default_factory=list)
    detail: list[float] = field(default_factory=list)

    def add(self, truth: np.ndarray, result: np.ndarray, mask: np.ndarray) -> None:
        self.psnr.append(psnr(truth, result))
        self.ssim.append(ssim(truth, result))
        self.hole_l1.append(hole_l1(truth, result, mask))
        self.detail.append(detail_ratio(truth, result, mask))

    def summary(self) -> dict[str, float]:
        finite = [p for p in self.psnr if np.isfinite(p)]
        return {"psnr": float(np.mean(finite)) if finite else float("inf"),
                "ssim": float(np.mean(self.ssim)), "hole_l1": float(np.mean(self.hole_l1)),
                "detail": float(np.mean(self.detail)), "n": len(self.ssim)}


def evaluate_mask(model, images: np.ndarray, stems: list[str], kind: str, options, *,
                  batch_size: int = 64, center_scale: float = 0.25,
                  missing_fraction: float = 0.8, progress=None) -> dict:
    """Complete `images` (N, S, S, 3) uint8 under mask type `kind` and score the completed and
    blended results and both baselines against the originals. Returns
    {method: {psnr, ssim, hole_l1, detail, n}, "seconds_per_image": float, "iterations": int
    (the search's, as the Completer decided them), "per_image": {"stems":
    [...], "completed" and "blended": {psnr: [...], ssim: [...], hole_l1: [...], detail: [...]}}}
    (each face's scores, in the order of `stems`)."""
    from inpaint.search import Completer

    spec = MaskSpec(kind, center_scale=center_scale, missing_fraction=missing_fraction,
                    seed=options.seed)
    run = Completer(model, options, lowres=spec.lowres, scattered=spec.scattered)
    scores = {m: MethodScores() for m in ("completed", "blended", "mean_fill", "harmonic")}
    seconds = 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        names = stems[start:start + batch_size]
        masks = np.stack([spec.mask_for(name, batch.shape[1]) for name in names])
        t0 = time.time()
        result = run(batch, masks, seeds=[image_seed(options.seed, s) for s in names])
        seconds += time.time() - t0
        for i in range(len(batch)):
            scores["completed"].add(batch[i], result.completed[i], masks[i])
            blended = result.blended[i] if result.blended is not None else result.completed[i]
            scores["blended"].add(batch[i], blended, masks[i])
            scores["mean_fill"].add(batch[i], mean_fill(batch[i], masks[i]), masks[i])
            scores["harmonic"].add(batch[i], harmonic_baseline(batch[i], masks[i]), masks[i])
        if progress is not None:
            progress(len(batch))
    out = {m: s.summary() for m, s in scores.items()}
    out["seconds_per_image"] = seconds / max(len(images), 1)
    out["iterations"] = run.options.iters  # as decided for the start and the mask's kind
    # Each face's scores, so two models (or two settings) can be compared face by face
    # (paired_differences): a mean difference of 0.03 dB means little without its spread.
    out["per_image"] = {"stems": list(stems),
                        **{m: asdict(scores[m]) for m in ("completed", "blended")}}
    return out


METRICS = ("psnr", "ssim", "hole_l1", "detail")


def paired_differences(before: dict, after: dict, method: str = "blended") -> dict[str, dict]:
    """Face-by-face differences after - before of two `inpaint evaluate --json` reports on the
    same faces: {mask: {metric: {mean, se, low, high, better, n}}} for each mask type in both,
    where (low, high) is the mean's 95% interval (normal approximation, 1.96 standard errors)
    and `better` the faces on which `after` scores better (higher, but lower for hole L1).
    Pairs with a non-finite score (PSNR of an exact fill) are left out. ValueError when a report
    has no per-face scores (written before they were kept) or the faces differ."""
    out = {}
    for kind in [k for k in before["results"] if k in after["results"]]:
        a, b = before["results"][kind].get("per_image"), after["results"][kind].get("per_image")
        if a is None or b is None:
            raise ValueError(f"{kind}: a report has no per-face scores (written by an older "
                             "inpaint evaluate); evaluate again")
        if a["stems"] != b["stems"]:
            raise ValueError(f"{kind}: the reports scored different faces "
                             f"({len(a['stems'])} and {len(b['stems'])}); compare reports "
                             "of the same images and --limit")
        out[kind] = {}
        for metric in METRICS:
            x = np.asarray(a[method][metric], np.float64)
            y = np.asarray(b[method][metric], np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            d = y[ok] - x[ok]
            n = int(d.size)
            mean = float(d.mean()) if n else float("nan")
            se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            better = int(np.sum(d < 0 if metric == "hole_l1" else d > 0))
            out[kind][metric] = {"mean": mean, "se": se, "low": mean - 1.96 * se,
                                 "high": mean + 1.96 * se, "better": better, "n": n}
    return out


# The masks `inpaint evaluate` scores when none are named.
DEFAULT_MASK_TYPES = ("center", "random", "left")


def evaluate_masks(model, images: np.ndarray, stems: list[str], kinds, options, *,
                   batch_size: int = 64, progress: bool = True) -> dict[str, dict]:
    """evaluate_mask for each mask type in `kinds`, with one progress bar over them all:
    {kind: evaluate_mask(...)}."""
    from tqdm import tqdm

    results = {}
    with tqdm(total=len(images) * len(kinds), disable=not progress, unit="img") as bar:
        for kind in kinds:
            bar.set_description(kind)
            results[kind] = evaluate_mask(model, images, stems, kind, options,
                                          batch_size=batch_size, progress=bar.update)
    return results


def write_report(path, results: dict, options, model, n_images: int,
                 skipped: list[str]) -> None:
    """The results as JSON at `path` (replaced whole): the images scored and skipped, the
    search options, the model's identity and {kind: scores}."""
    from inpaint.files import atomic_write_bytes

    record = {"images": n_images, "skipped": skipped, "options": asdict(options),
              "model": model.identity, "results": results}
    atomic_write_bytes(path, json.dumps(record, indent=2).encode())


def markdown_table(results: dict[str, dict]) -> str:
    """{mask: evaluate_mask(...)} -> a markdown table, one row per mask and method."""
    lines = ["| mask | method | PSNR (dB) | SSIM | hole L1 | detail (log2) | s/image |",
             "|---|---|---|---|---|---|---|"]
    for kind, res in results.items():
        for method in ("completed", "blended", "mean_fill", "harmonic"):
            s = res[method]
            secs = f"{res['seconds_per_image']:.2f}" if method in ("completed", "blended") else ""
            lines.append(f"| {kind} | {method} | {s['psnr']:.2f} | {s['ssim']:.4f} | "
                         f"{s['hole_l1']:.2f} | {s['detail']:+.2f} | {secs} |")
    return "\n".join(lines)


def quality_curve(model, images: np.ndarray, stems: list[str], kind: str, options,
                  every: int = 25) -> list[dict]:
    """PSNR of the completed images against the originals along one search: a list of
    {iteration, psnr, seconds} every `every` iterations (seconds of search so far, the scoring
    itself not counted)."""
    from inpaint.search import Completer

    spec = MaskSpec(kind, seed=options.seed)
    run = Completer(model, options, lowres=spec.lowres, scattered=spec.scattered)
    masks = np.stack([spec.mask_for(s, images.shape[1]) for s in stems])
    curve = []
    clock = {"start": time.perf_counter(), "paused": 0.0}

    def on_step(i, generated, completions, losses):
        if i % every and i != run.options.iters:
            return
        t = time.perf_counter()
        curve.append({"iteration": i,
                      "psnr": float(np.mean([psnr(a, b) for a, b in zip(images, completions)])),
                      "seconds": t - clock["start"] - clock["paused"]})
        clock["paused"] += time.perf_counter() - t

    clock["start"] = time.perf_counter()
    run(images, masks, seeds=[image_seed(options.seed, s) for s in stems], blend_result=False,
        callback=on_step)
    return curve
