"""Helpers shared by the kinds that read a text file."""

from __future__ import annotations

import argparse
import codecs
import os

from pimq.jobs.split import WHITESPACE, FileSlices, split_file

# How much of a file is looked at to tell text from binary.
SNIFF_BYTES = 64 * 1024


def add_file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="text file (UTF-8) on this machine")


def check_file(path: str) -> None:
    """Raise ValueError with a one-line message unless ``path`` is readable UTF-8 text.

    Only the start of the file is checked; later stray bytes are never word
    characters (see :func:`decode`)."""
    if not os.path.exists(path):
        raise ValueError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"is a directory, not a file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read file: {path}")
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if b"\0" in head:
        raise ValueError(f"not a text file (it holds NUL bytes): {path}")
    try:  # incremental: a character cut at the end of the sample is fine
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start} is invalid): {path}") from None


def file_shards(path: str, shards: int, separators: bytes = WHITESPACE) -> FileSlices:
    """The file cut on ``separators`` (:func:`pimq.jobs.split.split_file`): pieces are
    read from disk as they are published."""
    try:
        return split_file(path, shards, separators)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def decode(body: bytes) -> str:
    """UTF-8 with undecodable bytes kept as lone surrogates (never word chars)."""
    return body.decode("utf-8", "surrogateescape")
