"""Completing image files batch by batch (`inpaint complete`): the file layer over the latent
search (inpaint.search), image files in, an output folder (inpaint.layout) out.

`complete_files()` reads inputs in batches, builds their masks (masks.MaskSpec), runs the search
and writes every output, the per-iteration log and the run record; `write_sheet()` draws the
contact sheet. The search itself is inpaint.search's, its options inpaint.config's.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inpaint import layout
from inpaint import masks as masklib
from inpaint.config import SearchOptions
from inpaint.errors import ImageReadError, MaskError
from inpaint.files import atomic_write_bytes
from inpaint.images import (
    contact_sheet,
    crop_resize,
    make_grid,
    read_image,
    to_uint8,
    write_image,
)
from inpaint.masks import MaskSpec
from inpaint.records import JsonlLog, check_settings, in_shard, output_stems
from inpaint.search import Completer, CompletionResult

log = logging.getLogger(__name__)


@dataclass
class FilesSummary:
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done in an earlier run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    resized: list[str] = field(default_factory=list)
    resized_example: str = ""  # "<path> is WxH", the first of them
    seconds: float = 0.0
    other_shards: int = 0  # inputs left to the other shards (with `shard`)


def masked_view(image: np.ndarray, mask: np.ndarray, lowres: bool) -> np.ndarray:
    """What is known of an image, for people: holes grey, or the block means for lowres."""
    if lowres:
        return np.clip(np.round(masklib.lowres(image)), 0, 255).astype(np.uint8)
    return np.where(mask[..., None] > 0.5, image, np.uint8(128)).astype(np.uint8)


def _prepare(path: Path, stem: str, mask: MaskSpec, size: int,
             summary: FilesSummary | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one input at the model size and build its mask. Raises ImageReadError/MaskError."""
    img = read_image(path)
    h, w = img.shape[:2]
    m = mask.mask_for(stem, size, (w, h))
    if summary is not None and (mask.file or mask.folder or mask.box):
        if m.min() > 0.5:
            log.warning("the mask of %s marks every pixel known: nothing to fill", path)
        elif m.max() < 0.5:
            log.warning("the mask of %s marks no pixel known: the completion is whatever the "
                        "generator makes, unconstrained by the image", path)
    if (h, w) != (size, size):
        if summary is not None:  # complete_files warns once, with the count
            log.debug("%s is %dx%d: centre-cropped and resized to %d", path, w, h, size)
            summary.resized.append(str(path))
            summary.resized_example = summary.resized_example or f"{path} is {w}x{h}"
        img = crop_resize(img, size, "center", 1.0)
    return img, m


def complete_files(inputs: Sequence[Path], out_dir: Path, model, *, mask: MaskSpec,
                   options: SearchOptions, batch_size: int = 64, blend_result: bool = True,
                   out_interval: int = 10, overwrite: bool = False, progress: bool = True,
                   run_options: dict | None = None, shard: tuple[int, int] | None = None,
                   sheet_scale: int | None = None) -> FilesSummary:
    """Complete every image file in `inputs` with `model` (models.LoadedModel) and write into
    `out_dir`: completed/, blended/, generated/, masked/ (<stem>.png each); progress/NNNN.png and
    hats/NNNN.png (grids of the first batch's completions and raw G(z) every `out_interval`
    iterations; later batches prefix bKKK_); frames/<stem>/NNNN.png (each image's completion over
    the search); sheet.png; log.jsonl (losses per iteration and image); run.json.

    Images stream in batches of `batch_size`. Unreadable images are recorded in the summary and
    skipped; images whose outputs exist are skipped unless `overwrite`. completed/<stem>.png is
    written last, so it marks an image as done.

    `shard` (I, N) completes only shard I of N (`in_shard`), so N processes or machines given
    the same inputs and `out_dir` share the work and their outputs merge: shards other than the
    first prefix their progress/ and hats/ grids with `shardI_`, each writes its own
    log.shard-I-of-N.jsonl and run.shard-I-of-N.json, and sheet.png shows every image completed
    in `out_dir` when the shard finished."""
    size = model.config.model.image_size
    out_dir = Path(out_dir)
    # the search set up first (search.Completer): options it refuses (an encoder start the model
    # cannot give, a code stage it does not have) fail before anything is written
    run = _BatchRun(out_dir, model, options, mask, shard, blend_result, out_interval, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the options as they will run (iterations decided for the start and the mask), so a run
    # resumed after the defaults changed is not mixed with outputs made under the old ones
    settings = completion_settings(run.completer.options, mask, model, blend_result)
    check_settings(out_dir, settings, overwrite, layout.RUN_RECORDS, "completions")
    _write_run_record(out_dir, shard, {"settings": settings, "finished": False})
    stems = output_stems(inputs)
    summary = FilesSummary()
    t0 = time.time()
    pending = _pending(inputs, stems, out_dir, shard, overwrite, summary)
    if mask.file is not None:  # a single mask file is checked once, before any work
        mask.mask_for("", size)
    batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
    bar = tqdm(total=len(pending), disable=not progress, unit="img", desc="images")
    for bi, batch in enumerate(batches):
        images, batch_masks, names = _read_batch(batch, mask, size, summary, bar)
        if names:
            result = run.complete_batch(bi, len(batches), images, batch_masks, names)
            _write_outputs(out_dir, names, images, batch_masks, result, mask.lowres, summary)
            bar.update(len(names))
    bar.close()
    _warn_resized(summary, len(pending), size)
    write_sheet(out_dir, list(zip(inputs, stems)), mask, size, sheet_scale)
    summary.seconds = time.time() - t0
    record = {"options": asdict(options), "mask": mask.describe(), "batch_size": batch_size,
              "blend": blend_result, "out_interval": out_interval, "model": model.identity,
              "inputs": len(inputs), "completed": len(summary.completed),
              "skipped": len(summary.skipped),
              "failed": [{"path": p, "reason": r} for p, r in summary.failed],
              "resized": summary.resized, "seconds": round(summary.seconds, 2),
              "shard": list(shard) if shard else None, "other_shards": summary.other_shards,
              "settings": settings, "finished": True, **(run_options or {})}
    _write_run_record(out_dir, shard, record)
    return summary


def _write_run_record(out_dir: Path, shard: tuple[int, int] | None, record: dict) -> None:
    """run.json (run.shard-I-of-N.json for a shard), replaced whole."""
    atomic_write_bytes(layout.run_record(out_dir, shard),
                       json.dumps(record, indent=2).encode())


def _pending(inputs: Sequence[Path], stems: list[str], out_dir: Path,
             shard: tuple[int, int] | None, overwrite: bool,
             summary: FilesSummary) -> list[tuple[Path, str]]:
    """(path, stem) of the inputs this run completes; the others are counted in `summary`."""
    pending = []
    for path, stem, mine in zip(inputs, stems, in_shard(stems, shard)):
        if not mine:
            summary.other_shards += 1
        elif layout.image_output(out_dir, layout.COMPLETED, stem).exists() and not overwrite:
            summary.skipped.append(str(path))
        else:
            pending.append((Path(path), stem))
    return pending


def _read_batch(batch: list[tuple[Path, str]], mask: MaskSpec, size: int,
                summary: FilesSummary, bar) -> tuple[np.ndarray, np.ndarray, list]:
    """The readable images of a batch (B, S, S, 3) uint8, their masks (B, S, S) and their
    (path, stem); unreadable ones are recorded as failed (and counted on `bar`)."""
    images, batch_masks, names = [], [], []
    for path, stem in batch:
        try:
            img, m = _prepare(path, stem, mask, size, summary)
        except (ImageReadError, MaskError) as exc:
            summary.failed.append((str(path), str(exc)))
            log.error("%s", exc)
            bar.update(1)
            continue
        images.append(img)
        batch_masks.append(m)
        names.append((path, stem))
    if not names:
        return np.empty(0), np.empty(0), names
    return np.stack(images), np.stack(batch_masks), names


class _BatchRun:
    """The search of complete_files, batch by batch: the networks in the options' precision, one
    compiled search (search.Completer), and what each step writes (log lines, progress grids, frames)."""

    def __init__(self, out_dir: Path, model, opts: SearchOptions, mask: MaskSpec,
                 shard: tuple[int, int] | None, blend_result: bool, out_interval: int,
                 progress: bool):
        self.out_dir, self.opts, self.mask = out_dir, opts, mask
        self.blend_result, self.out_interval, self.progress = blend_result, out_interval, progress
        self.completer = Completer(model, opts, lowres=mask.lowres,
                                   scattered=mask.scattered)
        # Shards share out_dir: files every shard would write get the shard's name.
        self.grid_prefix = f"shard{shard[0]}_" if shard and shard[0] > 1 else ""
        self.log_path = layout.log_path(out_dir, shard)
        self.blend_frames = blend_result and not mask.lowres

    def complete_batch(self, bi: int, n_batches: int, images: np.ndarray, masks: np.ndarray,
                       names: list[tuple[Path, str]]) -> CompletionResult:
        """Complete batch number `bi`, writing its log lines and progress images as it goes."""
        opts = self.completer.options  # with the iterations that will run
        prefix = self.grid_prefix + ("" if bi == 0 else f"b{bi:03d}_")
        it_bar = tqdm(total=opts.iters + 1, disable=not self.progress, leave=False, unit="it",
                      desc=f"batch {bi + 1}/{n_batches}")
        log_file = JsonlLog(self.log_path)

        def on_step(i, generated, completions, losses):
            for j, (_, stem) in enumerate(names):
                log_file.write({"batch": bi, "iter": i, "image": stem, **{
                    k: round(float(v[j]), 5) for k, v in losses.items()}})
            if i % self.out_interval == 0 or i == opts.iters:
                self._write_progress(prefix, i, generated, completions, names)
            it_bar.update(1)
            # shown at the bar's next redraw: forcing one per step would flood a log
            it_bar.set_postfix(loss=f"{float(np.mean(losses['total'])):.1f}", refresh=False)

        try:
            return self.completer(images, masks, blend_result=self.blend_result,
                                  seeds=[masklib.image_seed(opts.seed, s) for _, s in names],
                                  callback=on_step)
        finally:
            log_file.close()
            it_bar.close()

    def _write_progress(self, prefix: str, i: int, generated: np.ndarray,
                        completions: np.ndarray, names: list[tuple[Path, str]]) -> None:
        """progress/ and hats/ grids of the batch at iteration `i`, and each image's frame."""
        out_dir = self.out_dir
        write_image(out_dir / layout.PROGRESS / f"{prefix}{i:04d}.png",
                    make_grid(completions, ncols=8))
        write_image(out_dir / layout.HATS / f"{prefix}{i:04d}.png",
                    make_grid(to_uint8(generated), ncols=8))
        for j, (_, stem) in enumerate(names):
            write_image(out_dir / layout.FRAMES / stem / f"{i:04d}.png", completions[j])
            if self.blend_frames:  # for make-gif --image, which blends the frames
                write_image(out_dir / layout.FRAMES / stem / layout.GENERATED / f"{i:04d}.png",
                            to_uint8(generated[j]))


def _write_outputs(out_dir: Path, names: list[tuple[Path, str]], images: np.ndarray,
                   masks: np.ndarray, result: CompletionResult, lowres: bool,
                   summary: FilesSummary) -> None:
    """Each image's generated/, masked/, masks/, blended/ and, last (it marks the image done),
    completed/ file."""
    for j, (path, stem) in enumerate(names):
        out = functools.partial(layout.image_output, out_dir, stem=stem)  # out(folder) -> path
        write_image(out(layout.GENERATED), to_uint8(result.generated[j]))
        write_image(out(layout.MASKED), masked_view(images[j], masks[j], lowres))
        write_image(out(layout.MASKS),  # reusable: --mask OUT_DIR/masks
                    np.where(masks[j] > 0.5, 255, 0).astype(np.uint8))
        if result.blended is not None:
            write_image(out(layout.BLENDED), result.blended[j])
        write_image(out(layout.COMPLETED), result.completed[j])  # marks done
        summary.completed.append(str(path))


def _warn_resized(summary: FilesSummary, n_pending: int, size: int) -> None:
    if summary.resized:
        log.warning("%d of %d images are not %dx%d, the model's size (%s): centre-cropped "
                    "and resized. Faces from `inpaint align` fit this model with `--size %d`.",
                    len(summary.resized), n_pending, size, size, summary.resized_example,
                    size)


def completion_settings(opts: SearchOptions, mask: MaskSpec, model, blend_result: bool) -> dict:
    """Everything that decides the outputs of an image, as JSON values: the search options, the
    mask, the model (by its files' hashes) and blending. (Batch size and output interval do not:
    every image's search is independent and seeded by its name.)"""
    settings = {"options": asdict(opts), **mask.key(), "blend": blend_result,
                "model_sha256": model.identity.get("sha256")}
    return json.loads(json.dumps(settings))


# sheet.png's columns: (output sub-folder or None for the input, header).
SHEET_COLUMNS = ((layout.MASKED, "masked"), (layout.GENERATED, "G(z)"),
                 (layout.COMPLETED, "completed"), (layout.BLENDED, "blended"), (None, "original"))
# With the automatic scale a face on the sheet is at least this wide, so it reads without zooming.
SHEET_FACE_PX = 192
# ... unless the sheet would exceed this many pixels (hundreds of images): then less magnified.
SHEET_MAX_PIXELS = 40_000_000


def sheet_scale_for(size: int, n_rows: int, n_cols: int) -> int:
    """The automatic magnification of sheet.png: faces of `size` px shown at least SHEET_FACE_PX
    wide, less when the sheet would exceed SHEET_MAX_PIXELS; at least 1."""
    scale = -(-SHEET_FACE_PX // size)
    while scale > 1 and n_rows * (n_cols + 1) * (size * scale) ** 2 > SHEET_MAX_PIXELS:
        scale -= 1
    return scale


def write_sheet(out_dir: Path, items: Sequence[tuple[Path, str]], mask: MaskSpec,
                size: int, scale: int | None = None) -> Path | None:
    """sheet.png: a header line (masked | G(z) | completed | blended | original; a column whose
    outputs do not exist, e.g. blended with --no-blend, is left out) and one row per completed
    image, its file name on the left. Faces are magnified `scale` times (None: sheet_scale_for)."""
    rows, names = [], []
    for path, stem in items:
        if not layout.image_output(out_dir, layout.COMPLETED, stem).exists():
            continue
        row = {}
        for sub, _ in SHEET_COLUMNS:
            try:
                row[sub] = (_prepare(path, stem, mask, size)[0] if sub is None
                            else read_image(out_dir / sub / f"{stem}.png"))
            except (ImageReadError, MaskError):
                pass
        rows.append(row)
        names.append(Path(path).name)
    if not rows:
        return None
    columns = [(sub, title) for sub, title in SHEET_COLUMNS if any(sub in r for r in rows)]
    scale = scale or sheet_scale_for(size, len(rows), len(columns))
    sheet = contact_sheet([[r.get(sub) for sub, _ in columns] for r in rows],
                          [title for _, title in columns], names, scale=scale)
    path = out_dir / layout.SHEET
    write_image(path, sheet)
    return path
