"""How `inpaint fill` looks and how long it takes as faces get larger (README, docs/fill.md).

    python scripts/measure_fill.py PHOTO --region mouth --widths 64 128 256 512 --out docs/fill_limits.png

The photo is resized so that its largest face is about each width in pixels (the detector's box
width), filled with the default search, and a crop around the filled region is cut from each
result at the photo's own resolution. Prints a markdown table (face width, upsampling of the
64-pixel model output, seconds per stage) and writes the crops side by side, each scaled to the
same height with nearest-neighbour so no smoothing is added.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from inpaint.align import AlignSettings, FaceAligner  # noqa: E402
from inpaint.config import SearchOptions  # noqa: E402
from inpaint.fill import fill_photo  # noqa: E402
from inpaint.images import make_grid, read_image, write_image  # noqa: E402
from inpaint.models import PRETRAINED_DIR, load_model  # noqa: E402

CROP_HEIGHT = 256  # pixels of each crop in the output picture


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo", type=Path)
    p.add_argument("--region", default="mouth")
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--model", type=Path, default=PRETRAINED_DIR)
    p.add_argument("--precision", default="float32")
    p.add_argument("--out", type=Path, default=Path("docs/fill_limits.png"))
    args = p.parse_args()

    model = load_model(args.model)
    aligner = FaceAligner(AlignSettings(size=model.config.model.image_size))
    photo = read_image(args.photo)
    kept, _ = aligner.detect(photo)
    left, _, right, _ = kept[0].box
    base_width = right - left + 1
    opts = SearchOptions(precision=args.precision)
    print("| face width (px) | photo | upsampling (photo px per model px) | detect+align (s) | search (s) "
          "| warp+blend (s) | total (s) |")
    print("|---|---|---|---|---|---|---|")
    crops = []
    for width in args.widths:
        k = width / base_width
        size = (max(8, round(photo.shape[1] * k)), max(8, round(photo.shape[0] * k)))
        scaled = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS))
        res = fill_photo(scaled, model, aligner, regions=[args.region], options=opts,
                         name=f"{args.photo.stem}@{width}")
        face = res.faces[0]
        upsampling = 1.0 / float(np.linalg.svd(face.transform[:, :2], compute_uv=False).min())
        s = res.seconds
        print(f"| {face.box[2] - face.box[0] + 1} | {size[0]}x{size[1]} | {upsampling:.1f} | "
              f"{s['detect']:.2f} | {s['search']:.2f} | {s['blend']:.2f} | {s['total']:.2f} |",
              flush=True)
        ys, xs = np.nonzero(res.hole)
        cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
        half = max(ys.max() - ys.min(), xs.max() - xs.min()) // 2 + max(4, width // 16)
        y0, x0 = max(0, cy - half), max(0, cx - half)
        crop = res.image[y0:cy + half, x0:cx + half]
        crops.append(np.asarray(Image.fromarray(crop).resize(
            (round(crop.shape[1] * CROP_HEIGHT / crop.shape[0]), CROP_HEIGHT),
            Image.Resampling.NEAREST)))
    width = max(c.shape[1] for c in crops)
    crops = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0)), constant_values=255)
             for c in crops]
    write_image(args.out, make_grid(crops, ncols=len(crops)))
    print(f"crops: {args.out}")


if __name__ == "__main__":
    main()
