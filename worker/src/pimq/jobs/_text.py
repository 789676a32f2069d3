"""Helpers shared by the kinds that read a text file."""

from __future__ import annotations

import argparse
import os


def add_file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="text file (UTF-8) on this machine")


def check_file(path: str) -> None:
    """Raise ValueError with a one-line message if ``path`` is not readable."""
    if not os.path.exists(path):
        raise ValueError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"is a directory, not a file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read file: {path}")


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def decode(body: bytes) -> str:
    """UTF-8 with undecodable bytes kept as lone surrogates (never word chars)."""
    return body.decode("utf-8", "surrogateescape")
