"""Export a run's generator averaged at another decay, after the run, from its checkpoints
(inpaint.train.export_average; the CLI's `inpaint train -o RUN --export-only --average-decay D`
without the half-precision storage): to compare weight-average decays at equal wall time from
one run, and to package the one chosen.

    python scripts/posthoc_average.py runs/mine --decay 0.9995 -o runs/mine/model-9995
    python scripts/posthoc_average.py runs/mine --decay 0.9995 --upto 5000 --storage float16 -o m

The start of the average is the model the run was started from (`--init-from`, recorded in
run.json with its sha256, which is checked: where that folder holds another model by now, such as
inpaint/pretrained after a new model was shipped, give the original with --start DIR). Every
checkpoint up to --upto stands for the steps since the one before, so keep them all (`--set
train.keep_checkpoints=...`); with checkpoints every 250 steps and decay 0.999 this reproduced
the run's own average within 0.01 dB of completion PSNR (docs/quality.md). The discriminator is
the last checkpoint's. The average's batch-norm statistics are then recomputed for its weights
(`--batchnorm average` keeps them averaged like the weights, as before 2026-12-06).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--decay", type=float, required=True)
    parser.add_argument("--upto", type=int, help="last step to use (default: the newest)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="model directory")
    parser.add_argument("--storage", choices=["float32", "float16"], default="float32")
    parser.add_argument("--start", type=Path,
                        help="the model the run started from, where its --init-from folder "
                             "holds another one by now (checked by sha256)")
    parser.add_argument("--batchnorm", choices=["recompute", "average"], default="recompute",
                        help="the average's batch-norm statistics: recomputed for its weights "
                             "(default), or averaged like its weights (as before 2026-12-06)")
    args = parser.parse_args()

    from inpaint import train
    from inpaint.errors import InpaintError

    cfg = train.stored_config(args.run)
    if cfg is None:
        raise SystemExit(f"{args.run} holds no training run")
    try:
        print(train.export_average(args.run, cfg, args.decay, upto=args.upto, out_dir=args.out,
                                   storage=args.storage, start=args.start,
                                   batchnorm=args.batchnorm))
    except InpaintError as e:
        raise SystemExit(f"Error: {e}") from None


if __name__ == "__main__":
    main()
