"""Files written whole and read safely: what every module that writes or reads files uses.

Writes are atomic (a temporary name beside the target, then one rename), so a crash leaves the old
file or folder or the new one, never half of one; the temporaries are hidden, named after their
target (`.<name>.XXXXXXXX`) so that a killed process's can be recognised and removed, and get
ordinary permissions. Reads of a path a user gives never block on a FIFO and say why a special
file cannot be read.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from inpaint.errors import ImageReadError


def special_file_reason(path: str | Path) -> str | None:
    """Why `path` cannot be read as a file although it is there: a dangling symbolic link, a
    link loop, or no regular file (a FIFO, socket or device). None for a regular file, a folder
    or a path that does not exist."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return "a dangling symbolic link" if os.path.islink(path) else None
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "special")
    return f"not a regular file ({kind})"


def open_regular(path: str | Path, error=None) -> BinaryIO:
    """Open a regular file for reading in binary mode without ever blocking: a FIFO with no
    writer would hang an ordinary open() forever. Anything that is not a regular file raises
    `error` (default ImageReadError) with the reason (special_file_reason); a missing file
    raises FileNotFoundError, other failures OSError."""
    error = error or ImageReadError
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        reason = special_file_reason(path) if exc.errno in (errno.ELOOP, errno.ENOENT) else None
        if reason:
            raise error(f"{path}: {reason}") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
            raise error(f"{path}: {special_file_reason(path) or 'not a regular file'}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def safe_resolve(path: str | Path) -> Path:
    """`path` made absolute with its links resolved where they resolve: a link loop (which
    Path.resolve raises RuntimeError for) keeps its own absolute name, so it can be reported."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


# The longest file name (bytes) of Linux, macOS and Windows file systems.
NAME_MAX = 255
_MKSTEMP_RANDOM = 8  # characters tempfile adds between prefix and suffix


def cut_name(name: str, max_bytes: int) -> str:
    """`name` cut to at most `max_bytes` bytes of its file-system encoding, never inside a UTF-8
    character (a name cut mid-character shows as garbage, or cannot be typed back)."""
    raw = os.fsencode(name)
    if len(raw) <= max_bytes:
        return name
    end = max_bytes
    while 0 < end < len(raw) and raw[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
        end -= 1
    return os.fsdecode(raw[:end])


def temporary_prefix(name: str, suffix: str = "") -> str:
    """`.<name>.` for a temporary file or folder beside `name` (hidden, and recognisably its),
    with `name` cut short so that the prefix, tempfile's random characters and `suffix` fit in
    NAME_MAX bytes: a legal final name of 255 bytes must not make an illegal temporary one."""
    room = NAME_MAX - _MKSTEMP_RANDOM - len(os.fsencode(suffix)) - 2
    return "." + cut_name(name, room) + "."


def check_writable(path: str | Path) -> None:
    """Raise the OSError that writing a file at `path` would, now, before a long computation:
    its folder is created and a temporary file made and removed there; a folder at `path` is
    IsADirectoryError."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=temporary_prefix(path.name), dir=path.parent)
    os.close(fd)
    os.unlink(probe)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp"):
    """Yield a temporary file name in `path`'s folder for the caller to write; when the block
    ends without error the file replaces `path` in one rename, otherwise it is removed. So a crash
    leaves either the old file or the new one, never half of one. The file gets the permissions
    of an ordinary new file (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name, suffix), suffix=suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def atomic_dir(path: str | Path, *, prefix: str | None = None, fsync: bool = False):
    """Yield a new temporary folder beside `path` for the caller to fill; when the block ends
    without error the folder takes `path`'s place, otherwise it is removed. So a crash leaves the
    old folder or the new one, never a mixture, and never half a folder under `path`'s name.

    A folder cannot be renamed over a non-empty one, so an existing `path` is first renamed to
    `.<name>.old` and removed after the swap; a crash between the two renames leaves it there
    (the caller's clean-up of a killed run removes it, e.g. models.remove_stale_exports).
    `prefix` starts the temporary folder's name (default `.<name>.`), for that clean-up to find
    it. `fsync`: every file directly in the folder is synced to disk before the rename, so the
    rename never publishes data that a power cut would lose. The folder gets the permissions of
    an ordinary new folder (0777 less the umask), not mkdtemp's private 0700."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix or temporary_prefix(path.name), dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        if fsync:
            for f in tmp.iterdir():
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
        old = path.with_name(temporary_prefix(path.name, "old") + "old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably (see atomic_path)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
