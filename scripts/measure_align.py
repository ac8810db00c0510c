"""Accuracy and speed of `inpaint align`, the numbers in the README's alignment section.

    python scripts/measure_align.py all            # everything below, about 10 minutes on 2 cores
    python scripts/measure_align.py landmarks      # dlib's labelled faces: recall, landmark error
    python scripts/measure_align.py openface       # agreement with OpenFace's own 96x96 outputs
    python scripts/measure_align.py template       # the template re-derived from labelled faces
    python scripts/measure_align.py celeba         # HOG detection fraction on celeba-train
    python scripts/measure_align.py speed          # images/s with 1 and 2 workers
    python scripts/measure_align.py sheet          # docs/align_sheet.png

Reads ../shared/data (--data). Samples are seeded (--seed) so a re-run measures the same images.
Timings depend on the machine and on what else runs on it; each speed line states its inputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from inpaint import align  # noqa: E402
from inpaint.images import find_images, make_grid, read_image, write_image  # noqa: E402

DLIB_XML = ("testing_with_face_landmarks.xml", "training_with_face_landmarks.xml")


def load_labelled(folder: Path, name: str) -> list[tuple[Path, list[tuple[tuple, np.ndarray]]]]:
    """dlib's imglab XML -> [(image path, [(box (l, t, r, b) inclusive, (68, 2) landmarks)])]."""
    out = []
    for image in ET.parse(folder / name).getroot().iter("image"):
        faces = []
        for box in image.iter("box"):
            t, l_, w, h = (int(box.get(k)) for k in ("top", "left", "width", "height"))
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            pts = np.array([(int(p.get("x")), int(p.get("y"))) for p in parts], dtype=np.float64)
            faces.append(((l_, t, l_ + w - 1, t + h - 1), pts))
        out.append((folder / image.get("file"), faces))
    return out


def iou(a, b) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def match(labelled, detected, threshold=0.5):
    """Greedy one-to-one matching by IoU: {labelled index: detection}."""
    pairs = sorted(((iou(lb, d.box), i, j) for i, lb in enumerate(labelled)
                    for j, d in enumerate(detected)), reverse=True)
    used_l, used_d, out = set(), set(), {}
    for v, i, j in pairs:
        if v < threshold or i in used_l or j in used_d:
            continue
        used_l.add(i)
        used_d.add(j)
        out[i] = detected[j]
    return out


def nme(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point error over the 68 landmarks / outer-eye-corner distance (300-W's definition)."""
    iod = np.linalg.norm(truth[36] - truth[45])
    return float(np.mean(np.linalg.norm(pred - truth, axis=1)) / iod)


def cmd_landmarks(args) -> None:
    folder = args.data / "raw-photos" / "dlib-examples-faces"
    print("\n## Landmarks and detection on dlib's labelled example faces\n")
    print("Ground truth: `dlib-examples-faces/*_with_face_landmarks.xml`. Their own comment says the"
          " 68 points were\nmade with dlib's shape_predictor_68_face_landmarks.dat, so the landmark"
          " error measures how well\nthis pipeline reproduces them, not agreement with human"
          " annotators. Detections match a\nlabelled box at IoU >= 0.5; error = mean 68-point"
          " distance / outer-eye-corner distance.\n")
    print("| file | upsample | min score | labelled | found (recall) | unmatched detections |"
          " NME from detected box | NME from labelled box |")
    print("|---|---|---|---|---|---|---|---|")
    for name in DLIB_XML:
        data = load_labelled(folder, name)
        images = [read_image(path) for path, _ in data]
        for upsample in (0, 1, 2):
            aligner = align.FaceAligner(align.AlignSettings(upsample=upsample, min_score=-1.0))
            found_all = [aligner.detect(img)[0] for img in images]
            for min_score in sorted({0.0, 0.2, align.DEFAULT_MIN_SCORE, 0.5}):
                n = found = extra = 0
                err_det, err_box = [], []
                for img, (_, faces), dets in zip(images, data, found_all):
                    kept = [d for d in dets if d.score >= min_score]
                    m = match([b for b, _ in faces], kept)
                    n += len(faces)
                    found += len(m)
                    extra += len(kept) - len(m)
                    for i, (box, truth) in enumerate(faces):
                        err_box.append(nme(aligner.landmarks(img, box), truth))
                        if i in m:
                            err_det.append(nme(aligner.landmarks(img, m[i].box), truth))
                print(f"| {name.split('_')[0]} | {upsample} | {min_score:g} | {n} | {found} "
                      f"({found / n:.0%}) | {extra} | {100 * np.mean(err_det):.2f}% (median "
                      f"{100 * np.median(err_det):.2f}%) | {100 * np.mean(err_box):.2f}% |")


def register_reference(img, pins_src, targets, ref):
    """Recover the transform OpenFace used: the destinations `targets + delta` of our three pinned
    landmarks that make a plain bilinear warp of `img` match `ref` best (Powell on the mean
    absolute difference). Returns (delta `(3, 2)` px, residual MAD)."""
    from scipy.optimize import minimize

    def loss(d):
        t = align.solve_affine(pins_src, targets + d.reshape(3, 2))
        warped = align.warp_face(img, t, ref.shape[0], resample="bilinear", antialias=False)
        return np.abs(warped.astype(float) - ref).mean()

    r = minimize(loss, np.zeros(6), method="Powell", options={"xtol": 1e-2, "ftol": 1e-4})
    return r.x.reshape(3, 2), float(r.fun)


def cmd_openface(args) -> None:
    ref_dir = args.data / "raw-photos" / "openface-examples-aligned"
    src_dir = args.data / "raw-photos" / "openface-examples"
    settings = align.AlignSettings(size=96, upsample=1, min_score=align.DEFAULT_MIN_SCORE)
    aligner = align.FaceAligner(settings)
    probe = align.FaceAligner(align.AlignSettings(size=96, upsample=1, min_score=-1.0))
    pins = list(align.landmark_indices(settings.landmarks))
    targets = align.template_targets(96, settings.landmarks)
    print("\n## Agreement with OpenFace's own aligned outputs (96x96, inner eyes and bottom lip)\n")
    print("MAD: mean absolute difference per pixel and channel (0-255) against OpenFace's PNG, for\n"
          "our default warp and for plain bilinear sampling (OpenCV's warpAffine, what OpenFace\n"
          "uses). Registered: the transform OpenFace used, recovered by fitting where our three\n"
          "pinned landmarks must go for a bilinear warp of the photo to match its PNG; the residual\n"
          "MAD and how far those destinations are from the template's (mean of 3 points, px).\n"
          "Re-landmarked: dlib's landmarks predicted on the 96-pixel output, mean distance of the\n"
          "3 pinned points from the template targets, for our output and for OpenFace's.\n")
    print("| photo | MAD, default warp | MAD, bilinear | registered: residual MAD | registered: "
          "OpenFace's pinned points vs ours, px | re-landmarked: ours, px | re-landmarked: "
          "OpenFace's, px |")
    print("|---|---|---|---|---|---|---|")

    def pinned_error(face_img):
        dets, weak = probe.detect(face_img)
        found = dets or weak
        box = found[0].box if found else (0, 0, 95, 95)
        pts = probe.landmarks(face_img, box).astype(float)[pins]
        return float(np.linalg.norm(pts - targets, axis=1).mean())

    rows = []
    for ref_path in sorted(ref_dir.glob("*.png")):
        img = read_image(src_dir / f"{ref_path.stem}.jpg")
        ref = read_image(ref_path).astype(float)
        kept, _ = aligner.detect(img)
        face, points, transform = aligner.align(img, kept[0].box)
        plain = align.warp_face(img, transform, 96, resample="bilinear", antialias=False)
        mad = np.abs(face - ref).mean()
        mad_plain = np.abs(plain - ref).mean()
        delta, residual = register_reference(img, points[pins].astype(float), targets, ref)
        offset = float(np.linalg.norm(delta, axis=1).mean())
        ours, theirs = pinned_error(face), pinned_error(ref.astype(np.uint8))
        rows.append((mad, mad_plain, residual, offset, ours, theirs))
        print(f"| {ref_path.stem} | {mad:.1f} | {mad_plain:.1f} | {residual:.2f} | {offset:.1f} | "
              f"{ours:.1f} | {theirs:.1f} |")
    m = np.mean(rows, axis=0)
    print("| **mean** | " + " | ".join(f"**{v:.{2 if i == 2 else 1}f}**" for i, v in enumerate(m))
          + " |")


def cmd_template(args) -> None:
    folder = args.data / "raw-photos" / "dlib-examples-faces"
    shapes = [pts for name in DLIB_XML for _, faces in load_labelled(folder, name)
              for _, pts in faces]
    derived = align.mean_shape(shapes, reference=align.MEAN_FACE_68)  # OpenFace's frame
    print(f"\n## The template re-derived from {len(shapes)} labelled faces (Procrustes mean)\n")
    print("| size 64, inner eyes and bottom lip | OpenFace template | re-derived |")
    print("|---|---|---|")
    idx = list(align.landmark_indices(align.DEFAULT_LANDMARKS))
    for i in idx:
        a, b = 64 * align.TEMPLATE_68[i], 64 * derived[i]
        print(f"| point {i} | ({a[0]:.1f}, {a[1]:.1f}) | ({b[0]:.1f}, {b[1]:.1f}) |")
    dev = 64 * np.linalg.norm(align.TEMPLATE_68 - derived, axis=1)
    print(f"\nAll 68 points at size 64: mean deviation {dev.mean():.2f} px, max {dev.max():.2f} px "
          f"(point {dev.argmax()}).")


def sample(files: list[Path], n: int, seed: int) -> list[Path]:
    if n and len(files) > n:
        rng = np.random.default_rng(seed)
        files = [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]
    return files


def cmd_celeba(args) -> None:
    files = sample(find_images(args.data / "celeba-train"), args.sample, args.seed)
    print(f"\n## HOG detection on celeba-train ({len(files)} images sampled with seed {args.seed} "
          f"of {len(find_images(args.data / 'celeba-train'))}, 89x109, faces ~40 px wide)\n")
    thresholds = sorted({0.0, 0.2, align.DEFAULT_MIN_SCORE, 0.5})
    print("| upsample | " + " | ".join(
        f"found, min score {th:g}" + (" (default)" if th == align.DEFAULT_MIN_SCORE else "")
        for th in thresholds) + " | ms per image (detection) |")
    print("|---" * (len(thresholds) + 2) + "|")
    images = [read_image(p) for p in files]
    for upsample in (0, 1, 2):
        aligner = align.FaceAligner(align.AlignSettings(upsample=upsample, min_score=-0.5))
        best = []
        t = time.perf_counter()
        for img in images:
            kept, _ = aligner.detect(img)
            best.append(max((d.score for d in kept), default=-np.inf))
        ms = 1000 * (time.perf_counter() - t) / len(images)
        best = np.array(best)
        print(f"| {upsample} | " + " | ".join(f"{(best >= th).mean():.1%}" for th in thresholds)
              + f" | {ms:.0f} |")


def cmd_speed(args) -> None:
    sets = [("raw-photos (33 images, 96x96 to 1986x1545)", [args.data / "raw-photos"]),
            (f"celeba-val ({args.speed_sample} of 404, seed {args.seed}, ~200x200)",
             sample(find_images(args.data / "celeba-val"), args.speed_sample, args.seed))]
    print("\n## Throughput (HOG, upsample 1, size 64; models loaded before the clock starts)\n")
    print(f"{os.cpu_count()} CPU cores; the load average (1 min) after each run shows what else was"
          " running.\n")
    print("| inputs | workers | images | seconds | images/s | load average |")
    print("|---|---|---|---|---|---|")
    for label, inputs in sets:
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                s = align.align_batch(inputs, tmp, align.AlignSettings(), workers=workers)
            print(f"| {label} | {workers} | {s.processed} | {s.seconds:.1f} | "
                  f"{s.images_per_s:.2f} | {os.getloadavg()[0]:.1f} |")


def cmd_sheet(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        align.align_batch([args.data / "raw-photos"], tmp, align.AlignSettings())
        files = find_images(tmp)
        faces = [read_image(f) for f in files]
    grid = make_grid(faces, ncols=8, pad=2)
    grid = np.repeat(np.repeat(grid, 2, axis=0), 2, axis=1)  # 2x, nearest: pixels stay honest
    out = ROOT / "docs" / "align_sheet.png"
    write_image(out, grid)
    print(f"\nwrote {out.relative_to(ROOT)}: {len(faces)} faces aligned from raw-photos, 64x64 "
          f"shown at 2x")


COMMANDS = {"landmarks": cmd_landmarks, "openface": cmd_openface, "template": cmd_template,
            "celeba": cmd_celeba, "speed": cmd_speed, "sheet": cmd_sheet}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["all", *COMMANDS])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--sample", type=int, default=500, help="celeba-train images (0: all)")
    ap.add_argument("--speed-sample", type=int, default=100, help="celeba-val images timed")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no such folder (pass --data)")
    for name, fn in COMMANDS.items():
        if args.what in ("all", name):
            fn(args)


if __name__ == "__main__":
    main()
