"""The layout of an `inpaint complete` output folder, spelled once: complete.py writes it, gif.py
and later runs read it (no TensorFlow here, so `inpaint make-gif` stays light).

    completed/<stem>.png        the input's known pixels, the hole from G(z); written last, so
                                it marks the image done
    blended/<stem>.png          G(z) Poisson-blended into the hole (when blending)
    generated/<stem>.png        G(z)
    masked/<stem>.png           what was known, for people (holes grey, lowres: block means)
    masks/<stem>.png            the mask, white = known (reusable: --mask OUT_DIR/masks)
    progress/[P]NNNN.png        grids of a batch's completions every out_interval iterations
    hats/[P]NNNN.png            the same of the raw G(z)
    frames/<stem>/NNNN.png      one image's completion over the search; frames/<stem>/generated/
                                its G(z), for blended animations
    sheet.png                   the contact sheet
    log[.shard-I-of-N].jsonl    the losses per iteration and image
    run[.shard-I-of-N].json     the run record: settings, counts, timings
[P]: nothing for the first batch, `bKKK_` for batch KKK, `shardI_` first for shards I > 1.
"""

from __future__ import annotations

from pathlib import Path

from inpaint.records import shard_tag

COMPLETED = "completed"
BLENDED = "blended"
GENERATED = "generated"
MASKED = "masked"
MASKS = "masks"
PROGRESS = "progress"
HATS = "hats"
FRAMES = "frames"
SHEET = "sheet.png"
RUN_RECORDS = "run*.json"  # every shard's run record


def image_output(out_dir: Path, folder: str, stem: str) -> Path:
    """`out_dir/<folder>/<stem>.png`: one image's output in one of the per-image folders."""
    return out_dir / folder / f"{stem}.png"


def run_record(out_dir: Path, shard: tuple[int, int] | None = None) -> Path:
    """run.json, or run.shard-I-of-N.json for shard (I, N)."""
    return out_dir / f"run{shard_tag(shard)}.json"


def log_path(out_dir: Path, shard: tuple[int, int] | None = None) -> Path:
    """log.jsonl, or log.shard-I-of-N.jsonl for shard (I, N)."""
    return out_dir / f"log{shard_tag(shard)}.jsonl"
