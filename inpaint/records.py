"""Run records: JSON Lines logs appended with torn-line repair and read tolerantly, the output
stem of each input, and shards (N processes or machines splitting the same inputs).

A process killed mid-write leaves a last line without its newline; the next append starts on a
fresh line, and readers skip lines that are not whole JSON objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


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


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A unique, safe output stem per input (file stems; repeats get -2, -3, ...). A stem is a
    single path component, so no output can escape the output directory. Stems differ in more
    than letter case (a case-insensitive disk would otherwise merge two), and a repeat never
    takes the stem of another input (x.png, x.jpg, x-2.png -> x, x-2, x-2-2)."""
    taken: set[str] = set()
    out = []
    for p in paths:
        base = Path(p).stem or "image"
        base = base.replace("/", "_").replace("\\", "_").lstrip(".") or "image"
        stem, n = base, 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.casefold())
        out.append(stem)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """`"2/4"` -> (2, 4): the second of four shards. ValueError unless 1 <= I <= N."""
    i, sep, n = text.partition("/")
    try:
        shard = int(i), int(n)
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise ValueError(f"expected I/N with 1 <= I <= N (e.g. 1/4), got {text!r}")
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
