"""Folder locks: one running command per output or run directory.

A lock is the file `.inpaint.lock` inside the folder, locked with flock(2) and holding the owner's
PID, host, command and start time. The operating system releases a flock when its process ends,
however it ends (SIGKILL included), so a lock file left by a dead process is stale by definition:
the next command takes it over and says so. A second command while the owner runs is refused with
DirInUse naming the owner.

Shards of one `complete` (--shard I/N) share their output folder on purpose: each takes the folder
lock shared and its own `.inpaint.shard-I-of-N.lock` exclusively, so shards run together while a
second copy of one shard, or an unsharded run, is refused.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from inpaint.errors import DirInUse

log = logging.getLogger(__name__)

LOCK_NAME = ".inpaint.lock"


def _owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(owner: dict) -> str:
    if not owner.get("pid"):
        return "other inpaint processes (shards of one run)"
    return (f"`inpaint {owner.get('command', '?')}` (PID {owner['pid']} on "
            f"{owner.get('host', '?')}, since {owner.get('started', '?')})")


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
            raise DirInUse(f"{folder} is in use by {_describe(_owner(main))}; wait for it to "
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
