"""A one-line progress bar on stderr (only when stderr is a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.note = ""

    def update(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1 and done < self.total:
            return
        self.last = now
        filled = self.width * done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"\r[{bar}] {done}/{self.total} shards  {now - self.start:6.1f} s {self.note}"
        self.stream.write(line.ljust(79))
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line without breaking the bar."""
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()
