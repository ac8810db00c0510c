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
    args = ap.parse_args()

    from inpaint.evaluate import evaluate_mask
    from inpaint.images import find_images, read_faces
    from inpaint.models import load_model
    from inpaint.search import SearchOptions

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


if __name__ == "__main__":
    main()
