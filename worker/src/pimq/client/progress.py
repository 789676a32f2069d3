"""A one-line progress bar on stderr (only when stderr is a terminal).

The line never outgrows the terminal (a wrapped line cannot be redrawn with
``\r``): it is fitted to the width at every redraw, so a 60-column SSH window
or a resized one keeps one line that updates in place.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

CLEAR_LINE = "\r\x1b[K"  # carriage return, erase to the end of the line


def columns() -> int:
    return shutil.get_terminal_size((80, 24)).columns


class Progress:
    def __init__(
        self, total: int, stream: TextIO | None = None, width: int = 30, unit: str = "shards"
    ) -> None:
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.note = ""

    def line(self, done: int, elapsed: float, cols: int) -> str:
        """The bar for ``done`` of ``total`` shards, at most ``cols - 1`` wide."""
        tail = f" {done}/{self.total} {self.unit} {elapsed:6.1f} s {self.note}".rstrip()
        room = cols - 1 - len(tail) - 2
        width = min(self.width, room)
        if width < 5:  # too narrow for a bar: the figures alone
            return tail.strip()[: max(cols - 1, 0)]
        filled = width * done // max(self.total, 1)
        return f"[{'#' * filled}{'.' * (width - filled)}]{tail}"

    def update(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1 and done < self.total:
            return
        self.last = now
        self.stream.write(CLEAR_LINE + self.line(done, now - self.start, columns()))
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line without breaking the bar."""
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
