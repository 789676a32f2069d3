"""The sample corpus the tests and the demo count words in (``data/`` at the root).

One place names the file, so that every suite reads the same bytes and none
reaches outside the repository. A missing file is an error, never a reason to
skip: a clone that lost it would otherwise pass while testing less.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHAKESPEARE = REPO / "data" / "tinyshakespeare.txt"
SHAKESPEARE_BYTES = 1_115_394


class MissingData(AssertionError):
    """The repository's sample data is not where it belongs."""


def shakespeare() -> Path:
    """The path of tinyshakespeare.txt, checked: present and whole."""
    if not SHAKESPEARE.is_file():
        raise MissingData(
            f"{SHAKESPEARE} is missing: it is part of the repository "
            "(git checkout -- data/tinyshakespeare.txt)"
        )
    size = SHAKESPEARE.stat().st_size
    if size != SHAKESPEARE_BYTES:
        raise MissingData(f"{SHAKESPEARE} is {size} bytes, not {SHAKESPEARE_BYTES}: damaged")
    return SHAKESPEARE


def shakespeare_bytes(copies: int = 1) -> bytes:
    """``copies`` copies of the corpus, end to end (40 make the 45 MB corpus)."""
    return shakespeare().read_bytes() * copies
