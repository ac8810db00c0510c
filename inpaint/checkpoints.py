"""The checkpoint folders both trainers write (inpaint.train's GAN, inpaint.encoder's encoder).

A run directory's checkpoints/ holds `ckpt-NNNNNNN` folders, NNNNNNN the step (7 digits or more):
    state.json             the step, what the trainer adds (epoch), time, inpaint version
    state.npz              optimizer variables (`<tag>_NNNN`) and what else the trainer keeps
    *.weights.h5           the networks' weights, one file each (Keras' own format)
A checkpoint is written into a temporary folder (`.tmp-ckpt-*`) and renamed into place when
complete, so the newest `ckpt-*` folder is always whole, whatever moment the process dies at.
Checkpoints that cannot be loaded are set aside as `damaged-ckpt-NNNNNNN`, never deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from inpaint import __version__
from inpaint.errors import RunDirError
from inpaint.files import atomic_dir

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^ckpt-(\d{7,})$")


class CheckpointedTrainer:
    """What the trainers share about their checkpoints: `ckpt_root/ckpt-<step>` folders
    written whole, the newest `keep` kept, restored newest first with damaged ones skipped and
    set aside. A subclass has `step` and `damaged` (a set) and defines load_checkpoint(path)."""

    step: int
    damaged: set[str]

    def _save_checkpoint(self, ckpt_root: Path, keep: int, write, info: dict) -> Path:
        """Write `ckpt_root/ckpt-<step>` (files.atomic_dir: a `.tmp-ckpt-*` folder, its files
        synced, then renamed): `write(folder)` adds the files, state.json the step and `info`;
        keep the newest `keep`. Returns its path."""
        ckpt_root.mkdir(parents=True, exist_ok=True)
        self._set_aside_damaged(ckpt_root)
        final = ckpt_root / f"ckpt-{self.step:07d}"
        if final.exists():
            return final
        with atomic_dir(final, prefix=".tmp-ckpt-", fsync=True) as tmp:
            write(tmp)
            (tmp / "state.json").write_text(json.dumps({
                "step": self.step, **info, "time": time.time(), "inpaint_version": __version__}))
        prune_checkpoints(ckpt_root, keep)
        return final

    def _set_aside_damaged(self, ckpt_root: Path) -> None:
        """Rename the checkpoints restore_latest could not load to `damaged-ckpt-NNNNNNN`, kept
        for inspection: otherwise they would take the places of the good checkpoints written
        since (pruning keeps the highest steps) and a checkpoint of their step would never be
        written again."""
        for name in sorted(self.damaged):
            if (ckpt_root / name).is_dir():
                aside, n = ckpt_root / f"damaged-{name}", 1
                while aside.exists():
                    n += 1
                    aside = ckpt_root / f"damaged-{name}-{n}"
                os.rename(ckpt_root / name, aside)
                log.warning("checkpoint %s could not be loaded; kept as %s", name, aside)
        self.damaged.clear()

    @staticmethod
    def remove_stale_temporaries(ckpt_root: Path) -> None:
        """Delete the temporary folders of checkpoints a killed process was writing or
        deleting (`.tmp-*`); only the process that writes checkpoints may call it."""
        if ckpt_root.is_dir():
            for p in ckpt_root.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)

    def restore_latest(self, ckpt_root: Path) -> Path | None:
        """Load the newest loadable checkpoint; a damaged one is skipped with a warning (and set
        aside by the next save_checkpoint). Returns its path, or None when there is no checkpoint
        (a fresh run). RunDirError when there are checkpoints and none of them loads: starting
        over would silently replace the run's history."""
        found = list_checkpoints(ckpt_root)
        first_reason = None
        for path in reversed(found):
            try:
                self.load_checkpoint(path)
                return path
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, RunDirError) as exc:
                log.warning("checkpoint %s is unreadable (%s); trying an older one", path, exc)
                self.damaged.add(path.name)
                first_reason = first_reason or f"{path.name}: {exc}"
        if found:
            raise RunDirError(
                f"none of the {len(found)} checkpoints in {ckpt_root} can be loaded (newest: "
                f"{first_reason}), so the run cannot resume. To start it over from step 0, move "
                f"{ckpt_root} and metrics.jsonl out of the run directory; or train into a new "
                "--out-dir")
        return None



def optimizer_arrays(tag: str, opt) -> dict[str, np.ndarray]:
    """An optimizer's variables as `{tag}_NNNN` arrays, for a checkpoint's state.npz."""
    return {f"{tag}_{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(opt.variables)}


def load_optimizer_arrays(state, tag: str, opt, path: Path) -> None:
    """Assign what optimizer_arrays saved (`state`: the open state.npz) back to `opt`;
    RunDirError when the count does not match (a checkpoint of another model)."""
    keys = sorted(k for k in state.files if k.startswith(tag + "_"))
    if len(keys) != len(opt.variables):
        raise RunDirError(f"{path}: optimizer state does not match the model")
    for v, k in zip(opt.variables, keys):
        v.assign(state[k])


def prune_checkpoints(ckpt_root: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints. Each is renamed first, so a crash halfway
    through the deletion leaves no half checkpoint under a checkpoint's name
    (CheckpointedTrainer.remove_stale_temporaries clears it on the next start)."""
    for old in list_checkpoints(ckpt_root)[:-keep]:
        doomed = ckpt_root / f".tmp-old-{old.name}"
        try:
            os.rename(old, doomed)
        except OSError:
            continue
        shutil.rmtree(doomed, ignore_errors=True)


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    if not ckpt_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir()
             if (m := CKPT_RE.match(p.name)) and (p / "state.json").is_file()]
    return [p for _, p in sorted(found)]


@contextlib.contextmanager
def removed_on_failed_start(run_dir: Path):
    """A run directory this block creates is removed again (with the folders above it that it
    created) if the block fails before the first checkpoint: a failed start leaves nothing
    behind, as nothing there could be resumed. A folder that existed is left as it is."""
    created = run_dir.absolute()  # the outermost folder this block will create
    while not created.parent.exists():
        created = created.parent
    existed = run_dir.exists()
    try:
        yield
    except BaseException:
        if not existed and run_dir.is_dir() and not any((run_dir / "checkpoints").glob("ckpt-*")):
            shutil.rmtree(created, ignore_errors=True)
        raise
