"""Export a warm-started run's generator averaged at another decay, after the run, from its
checkpoints (inpaint.train.posthoc_average): to compare weight-average decays at equal wall
time from one run, and to export the one chosen.

    python scripts/posthoc_average.py runs/mine --decay 0.9995 -o runs/mine/model-9995
    python scripts/posthoc_average.py runs/mine --decay 0.9995 --upto 5000 -o m5000

The start of the average is the model the run was started from (`--init-from`, recorded in
run.json; `--start` for another path). Every checkpoint up to --upto stands for the steps since
the one before, so keep them all (`--set train.keep_checkpoints=...`); with checkpoints every
250 steps and decay 0.999 this reproduced the run's own average within 0.01 dB of completion
PSNR (docs/quality.md). The discriminator is the last checkpoint's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--decay", type=float, required=True)
    parser.add_argument("--upto", type=int, help="last step to use (default: the newest)")
    parser.add_argument("--start", type=Path, help="model the run started from")
    parser.add_argument("-o", "--out", type=Path, required=True, help="model directory")
    parser.add_argument("--storage", choices=["float32", "float16"], default="float32")
    args = parser.parse_args()

    from inpaint import train
    from inpaint.checkpoints import CKPT_RE, list_checkpoints
    from inpaint.models import build_discriminator, build_generator, export_model, load_model

    cfg = train.stored_config(args.run)
    if cfg is None:
        raise SystemExit(f"{args.run} holds no training run")
    record = json.loads((args.run / "run.json").read_text("utf-8"))
    start_path = args.start or (record.get("init_from") or {}).get("path")
    if start_path is None:
        raise SystemExit("the run was not started from a model: give --start")
    ckpts = [(int(CKPT_RE.match(p.name).group(1)), p)
             for p in list_checkpoints(args.run / "checkpoints")]
    ckpts = [(t, p) for t, p in ckpts if args.upto is None or t <= args.upto]  # oldest first
    if not ckpts:
        raise SystemExit("no checkpoint to average")
    start = load_model(start_path)
    generator = build_generator(cfg.model)
    snapshots = []
    for t, p in ckpts:
        generator.load_weights(p / "generator.weights.h5")
        snapshots.append((t, generator.get_weights()))
    generator.set_weights(train.posthoc_average(start.generator.get_weights(), snapshots,
                                                args.decay))
    discriminator = build_discriminator(cfg.model)
    discriminator.load_weights(ckpts[-1][1] / "discriminator.weights.h5")
    info = {"run": str(args.run.resolve()), "checkpoint": ckpts[-1][1].name,
            "generator": f"post-hoc average, decay {args.decay}, of {len(ckpts)} checkpoints "
                         f"(steps {ckpts[0][0]}-{ckpts[-1][0]}) from {start_path}",
            "init_from": record.get("init_from")}
    print(export_model(args.out, generator, discriminator, cfg, step=ckpts[-1][0],
                       extra=info, storage=args.storage))


if __name__ == "__main__":
    main()
