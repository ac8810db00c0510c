"""The photo-detail step of `inpaint fill` against the plain fill and classical fills (docs/fill.md).

    python scripts/measure_fill_detail.py ../shared/data/raw-photos --region mouth --region nose \
        --json docs/fill_detail.json --crops docs/fill_detail_crops.png [--encoder-norm off]

Every photo below the folder in which a face is found has the named regions of its largest face
filled four ways on the same hole: `--detail none`, `--detail context`, OpenCV's Telea inpainting
(`pip install opencv-python-headless`; only this script needs it) and the harmonic fill. Inside
the hole, at the photo's own resolution: PSNR against the real photo and the detail ratio of
`inpaint evaluate` (log2 of the gradient energy over the real photo's; 0 = as much detail).
Prints a markdown table for faces at least --min-width pixels wide and for all faces, and the
seconds the detail step took. `--crops` writes, per face, real | none | context at 1:1 (the
--crop-faces largest faces) and 2x; a .jpg name saves at quality 85.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from inpaint.align import AlignSettings, FaceAligner  # noqa: E402
from inpaint.config import ENCODER_NORM_WORDS, SearchOptions  # noqa: E402
from inpaint.errors import InpaintError  # noqa: E402
from inpaint.evaluate import detail_ratio, harmonic_baseline  # noqa: E402
from inpaint.fill import fill_photo  # noqa: E402
from inpaint.images import find_images, read_image, write_image  # noqa: E402
from inpaint.models import PRETRAINED_DIR, load_model  # noqa: E402
from inpaint.search import Completer  # noqa: E402

METHODS = ("none", "context", "telea", "harmonic")


def hole_psnr(truth: np.ndarray, result: np.ndarray, hole: np.ndarray) -> float:
    err = (truth[hole].astype(np.float64) - result[hole].astype(np.float64)) ** 2
    return float(10 * np.log10(255.0 ** 2 / max(err.mean(), 1e-12)))


def telea(photo: np.ndarray, hole: np.ndarray) -> np.ndarray:
    import cv2

    bgr = np.ascontiguousarray(photo[..., ::-1])
    out = cv2.inpaint(bgr, hole.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    return out[..., ::-1]


def measure_photo(path: Path, completer, aligner, regions) -> dict | None:
    photo = read_image(path)
    results, seconds = {}, {}
    for mode in ("none", "context"):
        try:
            res = fill_photo(photo, completer, aligner, regions=regions, name=path.stem,
                             detail=mode)
        except InpaintError:
            return None
        results[mode], seconds[mode] = res, res.seconds
    hole = results["none"].hole
    images = {m: results[m].image for m in ("none", "context")}
    t = time.perf_counter()
    images["telea"] = telea(photo, hole)
    seconds["telea"] = {"total": time.perf_counter() - t}
    t = time.perf_counter()
    images["harmonic"] = np.clip(np.round(harmonic_baseline(photo, (~hole).astype(np.float32))),
                                 0, 255).astype(np.uint8)
    seconds["harmonic"] = {"total": time.perf_counter() - t}
    box = results["none"].faces[0].box
    row = {"photo": str(path), "size": [photo.shape[1], photo.shape[0]],
           "face_width": int(box[2] - box[0] + 1), "hole_pixels": int(hole.sum()),
           "detail_seconds": round(seconds["context"]["detail"], 3)}
    for m in METHODS:
        row[m] = {"psnr": round(hole_psnr(photo, images[m], hole), 3),
                  "detail": round(detail_ratio(photo, images[m], (~hole).astype(np.float32)), 3),
                  "seconds": round(seconds[m]["total"], 3)}
    return row, photo, images, hole


def crop_row(photo, images, hole, scale: int) -> np.ndarray:
    """real | none | context around the hole (a margin of a quarter of its size), nearest-neighbour x
    `scale`."""
    ys, xs = np.nonzero(hole)
    my, mx = (ys.max() - ys.min()) // 4 + 4, (xs.max() - xs.min()) // 4 + 4
    y0, y1 = max(0, ys.min() - my), min(hole.shape[0], ys.max() + my)
    x0, x1 = max(0, xs.min() - mx), min(hole.shape[1], xs.max() + mx)
    parts = [a[y0:y1, x0:x1] for a in (photo, images["none"], images["context"])]
    row = np.concatenate([np.pad(p, ((0, 0), (0, 4), (0, 0)), constant_values=255)
                          for p in parts], 1)
    return row.repeat(scale, 0).repeat(scale, 1)


def table(rows: list[dict], title: str) -> str:
    lines = [f"{title} ({len(rows)} photos)", "",
             "| method | detail (log2) | hole PSNR (dB) | s/photo |", "|---|---|---|---|"]
    for m in METHODS:
        d = np.mean([r[m]["detail"] for r in rows])
        p = np.mean([r[m]["psnr"] for r in rows])
        s = np.mean([r[m]["seconds"] for r in rows])
        lines.append(f"| {m} | {d:.2f} | {p:.2f} | {s:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--region", action="append", default=None)
    p.add_argument("--model", type=Path, default=PRETRAINED_DIR)
    p.add_argument("--min-width", type=int, default=150)
    p.add_argument("--json", type=Path)
    p.add_argument("--crops", type=Path, help="a PNG of real | none | context crops")
    p.add_argument("--crop-faces", type=int, default=4, help="faces in --crops (largest first)")
    p.add_argument("--encoder-norm", default="auto",
                   type=lambda v: v if v in ENCODER_NORM_WORDS else float(v),
                   help="the search option of that name: auto (the default), off or a number")
    args = p.parse_args()
    regions = args.region or ["mouth", "nose"]
    model = load_model(args.model)
    completer = Completer(model, SearchOptions(encoder_norm=args.encoder_norm))
    aligner = FaceAligner(AlignSettings(size=model.config.model.image_size))
    rows, shown = [], []
    for path in find_images(args.folder):
        if "aligned" in path.parent.name:
            continue  # already-aligned 96-px faces: no photo around them
        got = measure_photo(path, completer, aligner, regions)
        if got is None:
            continue
        row, photo, images, hole = got
        rows.append(row)
        print(f"{path.name}: face {row['face_width']} px, " + ", ".join(
            f"{m} {row[m]['detail']:+.2f}/{row[m]['psnr']:.2f} dB" for m in METHODS)
            + f", detail step {row['detail_seconds']} s", flush=True)
        shown.append((row["face_width"], photo, images, hole))
    big = [r for r in rows if r["face_width"] >= args.min_width]
    print()
    print(table(big, f"faces >= {args.min_width} px wide"))
    print()
    print(table(rows, "all faces"))
    if args.json:
        args.json.write_text(json.dumps({"regions": regions, "rows": rows}, indent=1))
    if args.crops and shown:
        shown.sort(key=lambda s: -s[0])
        picks = [s for s in shown if s[0] >= args.min_width][: args.crop_faces]
        for scale, suffix, n in ((1, "", len(picks)), (2, "_2x", len(picks))):
            strips = [crop_row(ph, im, ho, scale) for _, ph, im, ho in picks[:n]]
            width = max(s.shape[1] for s in strips)
            sheet = np.concatenate([np.pad(s, ((0, 6), (0, width - s.shape[1]), (0, 0)),
                                           constant_values=255) for s in strips], 0)
            out = args.crops.with_name(args.crops.stem + suffix + args.crops.suffix)
            if out.suffix.lower() in (".jpg", ".jpeg"):  # docs: small files, fine detail kept
                Image.fromarray(sheet).save(out, quality=85)
            else:
                write_image(out, sheet)
            print(f"wrote {out} ({Image.fromarray(sheet).size})")


if __name__ == "__main__":
    main()
