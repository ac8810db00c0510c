"""Seconds and peak memory of fill's photo-detail step on large photos (docs/fill.md).

    python scripts/time_fill_detail.py ../shared/data/raw-photos/openface-examples/lennon-1.jpg

The photo is resized so that it is H pixels high and pasted onto a grey W x H' canvas, for each
`--canvas WxH:PHOTO_HEIGHT` (default: a 1080p frame filled by the photo, and an 8000x6000 frame
holding it at 1200 and at 6000 pixels high); the mouth and nose of its largest face are filled
with `--detail none` and twice with `--detail context` (the first pays scipy's import). Prints
the face's width, the hole's size, the detail step's seconds, the whole fill's and the process's
peak resident memory so far.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from inpaint.align import AlignSettings, FaceAligner  # noqa: E402
from inpaint.fill import fill_photo  # noqa: E402
from inpaint.images import read_image  # noqa: E402
from inpaint.models import PRETRAINED_DIR, load_model  # noqa: E402
from inpaint.search import Completer  # noqa: E402

CANVASES = ("1920x1080:1080", "8000x6000:1200", "8000x6000:6000")


def on_canvas(photo: np.ndarray, spec: str) -> np.ndarray:
    size, _, height = spec.partition(":")
    w, h = (int(v) for v in size.split("x"))
    r = int(height) / photo.shape[0]
    im = Image.fromarray(photo).resize((round(photo.shape[1] * r), round(photo.shape[0] * r)),
                                       Image.LANCZOS)
    out = Image.new("RGB", (w, h), (90, 100, 110))
    out.paste(im, ((w - im.width) // 2, (h - im.height) // 2))
    return np.asarray(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo", type=Path)
    p.add_argument("--canvas", action="append", default=None, help="WxH:PHOTO_HEIGHT")
    p.add_argument("--model", type=Path, default=PRETRAINED_DIR)
    args = p.parse_args()
    model = load_model(args.model)
    completer = Completer(model)
    aligner = FaceAligner(AlignSettings(size=model.config.model.image_size))
    source = read_image(args.photo)
    for spec in args.canvas or CANVASES:
        photo = on_canvas(source, spec)
        for mode in ("none", "context", "context"):
            t = time.perf_counter()
            res = fill_photo(photo, completer, aligner, regions=["mouth", "nose"], name="t",
                             detail=mode)
            total = time.perf_counter() - t
            box = res.faces[0].box
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
            print(f"{spec}: face {box[2] - box[0] + 1} px, hole {int(res.hole.sum())} px, "
                  f"--detail {mode}: detail step {res.seconds['detail']:.2f} s, fill "
                  f"{total:.2f} s, peak memory {peak:.2f} GB", flush=True)


if __name__ == "__main__":
    main()
