"""Cutting inputs into shards: text on separator bytes, integer ranges evenly."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import overload

#: ASCII whitespace. ASCII bytes never occur inside a multi-byte UTF-8
#: character and are never word characters, so cutting right after one of
#: them never splits a word nor a character.
WHITESPACE = b" \t\n\r\x0b\x0c"
WINDOW = 64 * 1024  # bytes read at a time when looking for a cut in a file


def _bounds(size: int, shards: int, cut_after: Callable[[int], int | None]) -> list[int]:
    """Offsets ``0 = b0 < b1 < ... = size`` of at most ``shards`` pieces of about
    equal size; ``cut_after(pos)`` is the offset just past the first separator at
    or after ``pos`` (None if there is none)."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    bounds = [0]
    for k in range(1, shards):
        target = max(k * size // shards, bounds[-1] + 1)
        cut = cut_after(target - 1)
        if cut is None or cut >= size:
            break
        bounds.append(cut)
    bounds.append(size)
    return bounds


def _finder(separators: bytes) -> re.Pattern[bytes]:
    return re.compile(b"[" + re.escape(separators) + b"]")


def split_bytes(data: bytes, shards: int, separators: bytes = WHITESPACE) -> list[bytes]:
    """Cut ``data`` into at most ``shards`` pieces of about equal size.

    Every piece but the last ends with one of ``separators``; concatenated
    they give back ``data``. Fewer pieces come back when there are not
    enough separators (or bytes); an empty input gives one empty piece.
    """
    search = _finder(separators).search

    def cut_after(pos: int) -> int | None:
        match = search(data, pos)
        return match.end() if match else None

    b = _bounds(len(data), shards, cut_after)
    return [data[b[i] : b[i + 1]] for i in range(len(b) - 1)]


def split_lines(data: bytes, shards: int) -> list[bytes]:
    """Like :func:`split_bytes` but only cuts after ``\\n`` (whole lines)."""
    return split_bytes(data, shards, b"\n")


class FileSlices(Sequence[bytes]):
    """The pieces of a file, each read from disk when it is asked for.

    A controller holds these instead of the file's bytes: the first shard is
    on its way while the rest is still on disk, and a head node with many
    students running big jobs does not keep every input in memory. If the
    file changes while the job runs, reading a piece raises ValueError.
    """

    def __init__(self, path: str, bounds: list[int], stamp: tuple[int, int, int]) -> None:
        self.path = path
        self.bounds = bounds
        self.stamp = stamp

    def __len__(self) -> int:
        return len(self.bounds) - 1

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        start, end = self.bounds[index], self.bounds[index + 1]
        with open(self.path, "rb") as f:
            if _stamp(os.fstat(f.fileno())) != self.stamp:
                raise ValueError(f"{self.path} changed while the job ran")
            f.seek(start)
            data = f.read(end - start)
        if len(data) != end - start:
            raise ValueError(f"{self.path} changed while the job ran")
        return data


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def split_file(path: str, shards: int, separators: bytes = WHITESPACE) -> FileSlices:
    """:func:`split_bytes` of a file's contents, without reading all of it: only
    a window around each cut is read now, the pieces when they are asked for."""
    search = _finder(separators).search
    with open(path, "rb") as f:
        stamp = _stamp(os.fstat(f.fileno()))

        def cut_after(pos: int) -> int | None:
            while True:
                f.seek(pos)
                window = f.read(WINDOW)
                if not window:
                    return None
                match = search(window)
                if match:
                    return pos + match.end()
                pos += len(window)

        return FileSlices(path, _bounds(stamp[1], shards, cut_after), stamp)


def split_range(start: int, stop: int, shards: int) -> list[tuple[int, int]]:
    """Cut ``[start, stop)`` into at most ``shards`` non-empty half-open ranges."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    total = max(0, stop - start)
    if total == 0:
        return [(start, start)]
    shards = min(shards, total)
    bounds = [start + k * total // shards for k in range(shards + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(shards)]
