"""Run records: JSON Lines logs appended with torn-line repair and read tolerantly, the output
stem of each input, shards (N processes or machines splitting the same inputs), and the lock
that gives a run or output directory to one command at a time.

A process killed mid-write leaves a last line without its newline; the next append starts on a
fresh line, and readers skip lines that are not whole JSON objects.

A lock is the file `.inpaint.lock` inside the folder, locked with flock(2) and holding the owner's
PID, host, command and start time. The operating system releases a flock when its process ends,
however it ends (SIGKILL included), so a lock file left by a dead process is stale by definition:
the next command takes it over and says so. A second command while the owner runs is refused with
DirInUse naming the owner. Shards of one `complete` (--shard I/N) share their output folder on
purpose: each takes the folder lock shared and its own `.inpaint.shard-I-of-N.lock` exclusively,
so shards run together while a second copy of one shard, or an unsharded run, is refused.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from inpaint.errors import DirInUse, RunDirError, UsageError
from inpaint.files import NAME_MAX, cut_name

log = logging.getLogger(__name__)

LOCK_NAME = ".inpaint.lock"


def ends_mid_line(path: Path) -> bool:
    """Whether the text file at `path` ends without a newline (a write cut short)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # missing or empty
        return False


class JsonlLog:
    """Appends one JSON object per line to `path` (created with its folder). A torn last line
    left by a killed run is closed first, so it stays a line of its own. `compact` drops the
    spaces after separators; `flush` flushes every record, `fsync` also syncs it to disk."""

    def __init__(self, path: str | Path, *, compact: bool = False, flush: bool = False,
                 fsync: bool = False):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torn = ends_mid_line(path)
        self._separators = (",", ":") if compact else None
        self._flush, self._fsync = flush or fsync, fsync
        self._f = open(path, "a", encoding="utf-8")  # closed by close()
        if torn:
            self._f.write("\n")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, separators=self._separators) + "\n")
        if self._flush:
            self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def append_jsonl(path: str | Path, record: dict, *, fsync: bool = False) -> None:
    """Append one record to the JSON Lines file `path` (see JsonlLog)."""
    with JsonlLog(path, flush=True, fsync=fsync) as log:
        log.write(record)


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of the lines of `path`, in order; [] if it does not exist. Lines that are
    not whole JSON objects (a torn last line) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def recorded_paths(record: str | Path, key: str) -> list[Path] | None:
    """The paths a run record (a JSON file) lists under `key` (a list of strings, or one string
    as older runs wrote it); None when the file, the key or a usable value is missing."""
    try:
        found = json.loads(Path(record).read_text(encoding="utf-8"))[key]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(found, str):
        found = [found]
    if not isinstance(found, list) or not found or not all(isinstance(p, str) for p in found):
        return None
    return [Path(p) for p in found]


def output_stems(paths: Sequence[Path], suffix: str = ".png") -> list[str]:
    """A unique, safe output stem per input (file stems; repeats get -2, -3, ...). A stem is a
    single path component, so no output can escape the output directory. Stems differ in more
    than letter case (a case-insensitive disk would otherwise merge two), and a repeat never
    takes the stem of another input (x.png, x.jpg, x-2.png -> x, x-2, x-2-2). A stem is cut (at
    a character's end) so that it with `suffix`, or the input's own suffix where that is longer
    (fill keeps it), fits NAME_MAX bytes: a name that fits is kept whole."""
    taken: set[str] = set()
    out = []
    for p in paths:
        base = Path(p).stem or "image"
        base = base.replace("/", "_").replace("\\", "_").lstrip(".") or "image"
        room = NAME_MAX - max(len(os.fsencode(suffix)), len(os.fsencode(Path(p).suffix)))
        stem, n = cut_name(base, room), 1
        while stem.casefold() in taken:
            n += 1
            stem = cut_name(base, room - len(f"-{n}")) + f"-{n}"
        taken.add(stem.casefold())
        out.append(stem)
    return out


def check_stem(stem: str) -> str:
    """`stem` if it names one folder of a completion's outputs (no separator, not "." or ".."),
    else a UsageError: `make-gif --image ../../elsewhere` must not read frames outside
    SRC/frames."""
    if not stem or stem in (".", "..") or "/" in stem or "\\" in stem or "\0" in stem:
        raise UsageError(f"--image takes the stem of one completed image (a name such as "
                         f"'000', as in frames/000/), not a path: {stem!r}")
    return stem


def parse_shard(text: str) -> tuple[int, int]:
    """`"2/4"` -> (2, 4): the second of four shards. UsageError unless 1 <= I <= N."""
    i, sep, n = text.partition("/")
    try:
        shard = int(i), int(n)
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise UsageError(f"expected I/N with 1 <= I <= N (e.g. 1/4), got {text!r}")
    return shard


def in_shard(stems: Sequence[str], shard: tuple[int, int] | None) -> list[bool]:
    """Which inputs shard (I, N) takes: the output stems are sorted and dealt out in turn (the
    first to shard 1, the second to shard 2, ...), so N machines given the same inputs split
    them exactly, whatever order each lists them in; each input goes to one shard. None: all."""
    if shard is None:
        return [True] * len(stems)
    i, n = shard
    rank = {stem: r for r, stem in enumerate(sorted(stems))}
    return [rank[stem] % n == i - 1 for stem in stems]


def shard_tag(shard: tuple[int, int] | None) -> str:
    """".shard-I-of-N" for the run records a shard writes (run.json -> run.shard-1-of-4.json)."""
    return f".shard-{shard[0]}-of-{shard[1]}" if shard else ""


# --- the run-directory lock ---------------------------------------------------------------

def _owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(owner: dict, folder: Path | None = None) -> str:
    if not owner.get("pid"):
        shards = [_describe(o) for o in _live_shard_owners(folder)] if folder else []
        return "other inpaint processes (shards of one run" + (
            f": {'; '.join(shards)})" if shards else ")")
    return (f"`inpaint {owner.get('command', '?')}` (PID {owner['pid']} on "
            f"{owner.get('host', '?')}, since {owner.get('started', '?')})")


def _live_shard_owners(folder: Path) -> list[dict]:
    """The owners of the shard locks in `folder` that a running process still holds (a killed
    shard's file stays behind, unlocked: it is left out)."""
    owners = []
    for path in sorted(folder.glob(".inpaint.shard-*.lock")):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)  # nobody holds it: stale
        except OSError:
            owners.append(_owner(path))
        finally:
            os.close(fd)
    return [o for o in owners if o.get("pid")]


def _open_locked(path: Path, exclusive: bool) -> int | None:
    """An fd of `path` holding the flock, or None when another process holds it. Retries when
    the file was unlinked between our open and our lock (its owner released it then)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _write_owner(fd: int, path: Path, command: str) -> None:
    previous = _owner(path)
    if previous.get("pid") and previous.get("pid") != os.getpid():
        log.info("took over the stale lock of PID %s (%s), which is no longer running", previous[
            "pid"], previous.get("command", "?"))
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    data = json.dumps(owner).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _release(fd: int, path: Path, exclusive: bool) -> None:
    try:
        if not exclusive:  # the last shard out removes the file; others leave it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextmanager
def lock_folder(folder: str | Path, command: str, shard: tuple[int, int] | None = None):
    """Hold the lock of `folder` (created if missing) for the block. DirInUse when another
    running process holds it. `shard` (I, N): the folder shared with the other shards."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / LOCK_NAME
    held: list[tuple[int, Path, bool]] = []
    try:
        fd = _open_locked(main, exclusive=shard is None)
        if fd is None:
            raise DirInUse(f"{folder} is in use by {_describe(_owner(main), folder)}; wait for it to "
                           "finish or use another folder (a lock of a process that is no longer "
                           "running is taken over by itself)")
        held.append((fd, main, shard is None))
        if shard is None:
            _write_owner(fd, main, command)
        else:
            os.ftruncate(fd, 0)  # no exclusive owner now: a stale one's PID must not be shown
            own = folder / f".inpaint.shard-{shard[0]}-of-{shard[1]}.lock"
            fd = _open_locked(own, exclusive=True)
            if fd is None:
                raise DirInUse(f"shard {shard[0]}/{shard[1]} of {folder} is already running: "
                               f"{_describe(_owner(own))}")
            held.append((fd, own, True))
            _write_owner(fd, own, command)
        yield
    finally:
        for fd, path, exclusive in reversed(held):
            _release(fd, path, exclusive)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "model_sha256":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_settings(out_dir: Path, settings: dict, overwrite: bool, pattern: str,
                   what: str) -> None:
    """RunDirError naming the differences when `out_dir` holds `what` (outputs: "completions",
    "fills") made with other settings (the run records matching `pattern` say which), unless
    `overwrite`: skipping their inputs as "already done" would mix results, and the record would
    claim settings they were not made with."""
    if overwrite:
        return
    for path in sorted(Path(out_dir).glob(pattern)):
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(old, dict) or old == settings:
            continue
        before, now = _flatten(old), _flatten(settings)
        diffs = []
        for key in sorted(set(before) | set(now)):
            if before.get(key) == now.get(key):
                continue
            diffs.append("another model" if key == "model_sha256" else
                         f"{key} {before.get(key, '-')} there, {now.get(key, '-')} now")
        raise RunDirError(f"{out_dir} holds {what} made with other settings "
                          f"({'; '.join(diffs)}); use --overwrite to redo them with these "
                          "settings, or another --out-dir")
