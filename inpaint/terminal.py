"""What the command line writes to a terminal or a log: progress bars as plain lines in a log."""

from __future__ import annotations

import os
import re
import sys


class PlainLines:
    """A stderr for logs and pipes: progress-bar redraws (carriage returns, cursor moves of
    nested bars) become one plain line per redraw instead of escape codes. Everything else is the
    wrapped stream's."""

    _CONTROL = re.compile(r"\r|\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        if "\r" in text or "\x1b[" in text:
            line = self._CONTROL.sub("", text).rstrip()
            if line.strip():
                self._stream.write(line + "\n")
        elif text.strip():  # whitespace alone: a bar moving to its line, or clearing it
            self._stream.write(text)
        return len(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self._stream, name)


# In a log, a progress bar redraws at most this often (seconds): one line each time.
LOG_PROGRESS_INTERVAL = 30


def plain_progress_when_logged() -> None:
    """Without a terminal on stderr, progress bars print plain lines, every 30 s at most."""
    if not sys.stderr.isatty() and not isinstance(sys.stderr, PlainLines):
        sys.stderr = PlainLines(sys.stderr)
        os.environ.setdefault("TQDM_MININTERVAL", str(LOG_PROGRESS_INTERVAL))
