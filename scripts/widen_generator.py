"""Export a model whose generator is wider but computes the same faces (Net2WiderNet,
inpaint.models.widen_generator): to continue a trained generator with more filters instead of
training the wider one from scratch.

    python scripts/widen_generator.py pretrained --gf 80 -o models/wide80
    inpaint train --dataset faces -o runs/wide80 --config configs/celeba64.toml \\
        --set model.gf=80 --init-from models/wide80

The discriminator and the encoder (which proposes z for the same function) are copied unchanged;
the weights are stored in float32 so that the copy is exact up to float32 rounding, checked on
64 random z before anything is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model directory, run directory or 'pretrained'")
    parser.add_argument("--gf", type=int, required=True,
                        help="generator filters in the last hidden layer (above the model's)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--seed", type=int, default=0, help="which channels are copied")
    args = parser.parse_args()

    import dataclasses

    import numpy as np

    from inpaint.errors import InpaintError
    from inpaint.models import export_model, export_with_encoder, load_model, widen_generator

    try:
        model = load_model(None if args.model == "pretrained" else args.model)
        wide, model_cfg = widen_generator(model.generator, model.config.model, args.gf,
                                          seed=args.seed)
    except (InpaintError, ValueError) as e:
        raise SystemExit(f"Error: {e}") from None
    z = np.random.default_rng(0).uniform(-1, 1, (64, model_cfg.z_dim)).astype("float32")
    diff = float(np.abs(model.generator(z, training=False) - wide(z, training=False)).max())
    if not diff < 1e-4:
        raise SystemExit(f"Error: the widened generator differs by {diff:.3g}; nothing written")
    cfg = dataclasses.replace(model.config, model=model_cfg)
    note = (f"widened from gf {model.config.model.gf} to {args.gf} (Net2WiderNet, "
            f"scripts/widen_generator.py, seed {args.seed}); same outputs within {diff:.1e}")
    try:
        out = export_model(args.out, wide, model.discriminator, cfg,
                           step=model.meta.get("step", 0),
                           extra={"generator": note, "widened_from": model.identity})
        if model.encoder is not None:
            export_with_encoder(load_model(out), model.encoder, out,
                                info={"from": "copied from the model widened (same function)"})
    except (InpaintError, OSError) as e:
        raise SystemExit(f"Error: cannot write {args.out}: {e}") from None
    print(f"{out}: {note}")


if __name__ == "__main__":
    main()
