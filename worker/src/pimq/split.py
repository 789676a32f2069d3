"""Cutting inputs into shards: text on separator bytes, integer ranges evenly."""

from __future__ import annotations

import re

#: ASCII whitespace. ASCII bytes never occur inside a multi-byte UTF-8
#: character and are never word characters, so cutting right after one of
#: them never splits a word nor a character.
WHITESPACE = b" \t\n\r\x0b\x0c"


def split_bytes(data: bytes, shards: int, separators: bytes = WHITESPACE) -> list[bytes]:
    """Cut ``data`` into at most ``shards`` pieces of about equal size.

    Every piece but the last ends with one of ``separators``; concatenated
    they give back ``data``. Fewer pieces come back when there are not
    enough separators (or bytes); an empty input gives one empty piece.
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    size = len(data)
    if size == 0:
        return [b""]
    finder = re.compile(b"[" + re.escape(separators) + b"]")
    pieces: list[bytes] = []
    start = 0
    for k in range(1, shards):
        target = max(k * size // shards, start + 1)
        match = finder.search(data, target - 1)
        if match is None:
            break
        cut = match.end()
        if cut >= size:
            break
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    return pieces


def split_lines(data: bytes, shards: int) -> list[bytes]:
    """Like :func:`split_bytes` but only cuts after ``\\n`` (whole lines)."""
    return split_bytes(data, shards, b"\n")


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
