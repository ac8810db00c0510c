"""Pick the best checkpoint of a training run by completion quality, and package it.

    python scripts/pretrained.py select runs/celeba64 --images aligned/celeba-val --limit 64
    python scripts/pretrained.py package runs/celeba64 --step 4200     # -> inpaint/pretrained

`select` loads every checkpoint of the run, completes the first --limit validation faces with the
centre mask and prints PSNR/SSIM/detail of the blended results per checkpoint (the last training
step is not necessarily the best generator), for the generator's weight average and, with
--also-trained, for the trained generator itself. `package` exports one checkpoint (its average,
or with --trained the trained generator) with float16 weights into the package, where
`inpaint complete` finds it when --model is not given.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


from inpaint.checkpoints import CKPT_RE, list_checkpoints  # noqa: E402
from inpaint.config import SearchOptions  # noqa: E402
from inpaint.evaluate import evaluate_mask  # noqa: E402
from inpaint.images import find_images, read_faces  # noqa: E402
from inpaint.models import PRETRAINED_DIR, LoadedModel, export_model  # noqa: E402
from inpaint.train import GANTrainer, stored_config  # noqa: E402


def ckpt_step(path: Path) -> int:
    return int(CKPT_RE.match(path.name).group(1))


def trainer_at(run: Path, step: int | None) -> GANTrainer:
    cfg = stored_config(run)
    trainer = GANTrainer(cfg)
    ckpts = list_checkpoints(run / "checkpoints")
    chosen = [p for p in ckpts if step is None or ckpt_step(p) == step]
    if not chosen:
        raise SystemExit(f"no checkpoint at step {step} in {run}; have "
                         f"{[p.name for p in ckpts]}")
    trainer.load_checkpoint(chosen[-1])
    return trainer


def select(args) -> None:
    faces, stems, _ = read_faces(find_images(args.images)[: args.limit], 64)
    opts = SearchOptions(iters=args.iters, precision=args.precision)
    rows = []
    for ckpt in list_checkpoints(args.run / "checkpoints"):
        step = ckpt_step(ckpt)
        if step < args.min_step:
            continue
        trainer = trainer_at(args.run, step)
        kinds = {"average": trainer.output_generator}
        if args.also_trained and trainer.ema_generator is not None:
            kinds["trained"] = trainer.generator
        for kind, generator in kinds.items():
            # the checkpoint's networks as a model, as load_model would give them (no export)
            model = LoadedModel(generator, trainer.discriminator, trainer.cfg, {"step": step},
                                ckpt)
            t = time.time()
            res = evaluate_mask(model, faces, stems, args.mask, opts)
            row = {"step": step, "generator": kind,
                   **{k: res["blended"][k] for k in ("psnr", "ssim", "hole_l1", "detail")},
                   "completed_psnr": res["completed"]["psnr"],
                   "harmonic_psnr": res["harmonic"]["psnr"], "seconds": time.time() - t}
            rows.append(row)
            print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["psnr"])
    print(f"best: step {best['step']} {best['generator']} (blended PSNR {best['psnr']:.2f} dB)")


def _portable(init: dict | None) -> dict | None:
    """The warm start's record without this machine's absolute path to the package."""
    if isinstance(init, dict) and init.get("path") == str(PRETRAINED_DIR):
        return {**init, "path": f"inpaint/pretrained (step {init.get('step')}, shipped before)"}
    return init


def package(args) -> None:
    trainer = trainer_at(args.run, args.step)
    run_info = json.loads((args.run / "run.json").read_text())
    generator = trainer.generator if args.trained else trainer.output_generator
    datasets = run_info.get("dataset")
    datasets = [datasets] if isinstance(datasets, str) else datasets or []
    cfg = copy.deepcopy(trainer.cfg)
    # a run warm-started from the package (--init-from pretrained) takes this config: let it
    # choose the precision that pays on its own machine
    cfg.train.precision = "auto"
    out = export_model(args.out, generator, trainer.discriminator, cfg,
                       step=trainer.step, storage="float16",
                       extra={"trained_on": "CelebA (" + ", ".join(Path(d).name for d in datasets)
                                            + "; aligned by inpaint align)",
                              "training_images": run_info.get("images"),
                              "generator": "average" if generator is trainer.ema_generator
                              else "trained",
                              "init_from": _portable(run_info.get("init_from")),
                              "trained_precision": run_info.get("precision",
                                                                trainer.cfg.train.precision),
                              "licence": "CelebA: non-commercial research use only"})
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"packaged step {trainer.step} into {out} ({size / 1e6:.1f} MB)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select")
    s.add_argument("run", type=Path)
    s.add_argument("--images", type=Path, default=ROOT / "aligned" / "celeba-val")
    s.add_argument("--limit", type=int, default=64)
    s.add_argument("--iters", type=int, default=150)
    s.add_argument("--mask", default="center")
    s.add_argument("--precision", default="float32")
    s.add_argument("--min-step", type=int, default=0, help="skip earlier checkpoints")
    s.add_argument("--also-trained", action="store_true",
                   help="also score the trained generator beside its weight average")
    k = sub.add_parser("package")
    k.add_argument("run", type=Path)
    k.add_argument("--step", type=int, help="default: the latest checkpoint")
    k.add_argument("--out", type=Path, default=PRETRAINED_DIR)
    k.add_argument("--trained", action="store_true",
                   help="package the trained generator instead of its weight average")
    args = p.parse_args()
    select(args) if args.cmd == "select" else package(args)


if __name__ == "__main__":
    main()
