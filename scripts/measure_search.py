"""Score search variants on the same faces and masks: PSNR, SSIM, hole L1 and the detail ratio of
the blended results (and the harmonic fill beside them), and seconds per image.

    python scripts/measure_search.py aligned/celeba-val --limit 64 --mask center --mask left \\
        --variant z150=iters=150 --variant enc50=init=encoder,iters=50 --json out.json

A variant is NAME=KEY=VALUE,KEY=VALUE,... over SearchOptions fields (values parsed as int, float
or text). Prints a markdown table; --json writes every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition("=")
    fields = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        fields[key] = value
    return name, fields


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("faces", type=Path)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--mask", dest="masks", action="append")
    ap.add_argument("--variant", dest="variants", action="append", required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--curve", type=int, metavar="EVERY",
                    help="Instead: completed PSNR along each variant's search, every EVERY "
                         "iterations (evaluate.quality_curve), and a plot beside --json.")
    args = ap.parse_args()
    if args.curve:
        return curves(args)

    from inpaint.config import SearchOptions
    from inpaint.evaluate import evaluate_mask
    from inpaint.images import find_images, read_faces
    from inpaint.models import load_model

    model = load_model(args.model)
    paths = find_images(args.faces)[:args.limit]
    faces, stems, _ = read_faces(paths, model.config.model.image_size)
    rows = []
    for kind in args.masks or ["center"]:
        for text in args.variants:
            name, fields = parse_variant(text)
            opts = SearchOptions(**fields).validate()
            t0 = time.time()
            res = evaluate_mask(model, faces, stems, kind, opts, batch_size=args.batch_size)
            rows.append({"mask": kind, "variant": name, "options": fields,
                         "blended": res["blended"], "completed": res["completed"],
                         "harmonic": res["harmonic"], "seconds_per_image": res["seconds_per_image"],
                         "wall": time.time() - t0})
            b, h = res["blended"], res["harmonic"]
            print(f"| {kind} | {name} | {b['psnr']:.2f} | {b['ssim']:.4f} | {b['hole_l1']:.2f} | "
                  f"{b['detail']:+.2f} | {res['seconds_per_image']:.3f} | {h['psnr']:.2f} |",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "faces": str(args.faces), "n": len(faces), "cpu": platform.processor() or
            platform.machine(), "model": model.identity, "rows": rows,
            "defaults": dataclasses.asdict(SearchOptions())}, indent=2))


def curves(args) -> None:
    from inpaint.config import SearchOptions
    from inpaint.evaluate import quality_curve
    from inpaint.images import find_images, read_faces
    from inpaint.models import load_model

    model = load_model(args.model)
    faces, stems, _ = read_faces(find_images(args.faces)[:args.limit],
                                 model.config.model.image_size)
    out = {}
    for kind in args.masks or ["center"]:
        for text in args.variants:
            name, fields = parse_variant(text)
            curve = quality_curve(model, faces, stems, kind, SearchOptions(**fields),
                                  every=args.curve)
            out[f"{kind} / {name}"] = curve
            print(kind, name, " ".join(f"{c['iteration']}:{c['psnr']:.2f}" for c in curve),
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"n": len(faces), "curves": out}, indent=2))
        plot_curves(out, args.json.with_suffix(".png"))


def plot_curves(curves: dict, path: Path, w: int = 720, h: int = 420) -> None:
    """Completed PSNR against iterations, one line per curve, drawn with Pillow."""
    from PIL import Image, ImageDraw

    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
               (140, 86, 75)]
    pts = [(c["iteration"], c["psnr"]) for cv in curves.values() for c in cv]
    x1 = max(p[0] for p in pts) or 1
    y0, y1 = min(p[1] for p in pts) - 0.2, max(p[1] for p in pts) + 0.2
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    left, top, right, bottom = 60, 20, w - 220, h - 40

    def xy(it, v):
        return (left + (right - left) * it / x1, bottom - (bottom - top) * (v - y0) / (y1 - y0))

    d.rectangle([left, top, right, bottom], outline="black")
    for k in range(6):
        v = y0 + (y1 - y0) * k / 5
        d.text((5, xy(0, v)[1] - 6), f"{v:.1f} dB", fill="black")
        it = x1 * k / 5
        d.text((xy(it, y0)[0] - 8, bottom + 5), f"{it:.0f}", fill="black")
    d.text(((left + right) // 2 - 30, h - 18), "iterations", fill="black")
    for i, (name, cv) in enumerate(curves.items()):
        col = colours[i % len(colours)]
        d.line([xy(c["iteration"], c["psnr"]) for c in cv], fill=col, width=2)
        d.text((right + 10, top + 16 * i), name, fill=col)
    im.save(path)


if __name__ == "__main__":
    main()
