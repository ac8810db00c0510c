"""A few training steps from a model, on fixed batches and a fixed seed, then the samples of the
run's fixed z: to check that a change to the training step leaves what it computes alone (run it
under the code before and after and compare the outputs).

    python scripts/train_samples.py --faces aligned/celeba-train --out before/   # old code
    python scripts/train_samples.py --faces aligned/celeba-train --out after/    # new code
    python scripts/train_samples.py --compare before after

Writes OUT/grid.png (the weight average's samples, 8x8) and OUT/raw.npy (the trained generator's
outputs for the same z, float32 in [-1, 1]); --compare prints how far two runs' raw outputs are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def run(faces_dir: Path, out: Path, steps: int, precision: str, model: str) -> None:
    import tensorflow as tf

    from inpaint import images, train
    from inpaint.config import apply_overrides, load_config

    cfg = apply_overrides(load_config(ROOT / "configs" / "celeba64.toml"),
                          ["train.g_steps=1", f"train.precision={precision}"])
    trainer = train.GANTrainer(cfg)
    trainer.init_from_model(model)
    b = cfg.train.batch_size
    faces = images.read_faces(images.find_images(faces_dir)[:b * steps], cfg.model.image_size)[0]
    if len(faces) < b * steps:
        raise SystemExit(f"{faces_dir}: {len(faces)} faces, {b * steps} needed")
    real = images.to_float(faces)
    for i in range(steps):
        losses = trainer.train_step(tf.constant(real[i * b:(i + 1) * b]))
    print("last step:", {k: round(float(v), 4) for k, v in losses.items()})
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "raw.npy", trainer.generator(trainer.sample_z, training=False).numpy())
    images.write_image(out / "grid.png", images.make_grid(trainer.samples(), ncols=8))
    print(f"wrote {out / 'grid.png'} and {out / 'raw.npy'}")


def compare(a: Path, b: Path) -> None:
    x, y = np.load(a / "raw.npy"), np.load(b / "raw.npy")
    mse = float(np.mean((x - y) ** 2))
    psnr = 10 * np.log10(4 / mse) if mse else float("inf")
    print(f"trained generator's outputs: max |diff| {np.abs(x - y).max():.4f}, "
          f"mean {np.abs(x - y).mean():.4f}, {psnr:.1f} dB apart (on [-1, 1])")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, help="aligned faces to train on")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--model", default=str(ROOT / "inpaint" / "pretrained"))
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.faces and args.out:
        run(args.faces, args.out, args.steps, args.precision, args.model)
    else:
        parser.error("give --faces and --out, or --compare A B")


if __name__ == "__main__":
    main()
