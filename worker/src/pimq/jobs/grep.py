"""grep: count the lines that match a regular expression (Python ``re`` syntax).

Lines end at ``\\n``; a ``\\r`` before it stays part of the line, as in grep.
A last line without a newline counts; an empty file has no lines.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from pimq.jobs._text import check_file, decode, file_shards

HELP = "count the lines of a text file that match a regex (Python re syntax)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", help="regular expression, Python re syntax")
    parser.add_argument("file", help="text file (UTF-8) on this machine")
    parser.add_argument("--ignore-case", "-i", action="store_true", help="ignore case")


def params(args: argparse.Namespace) -> dict[str, Any]:
    compiled(args.pattern, bool(args.ignore_case))
    check_file(args.file)
    return {"pattern": args.pattern, "ignore_case": bool(args.ignore_case)}


@lru_cache(maxsize=32)
def compiled(pattern: str, ignore_case: bool) -> re.Pattern:
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None


def split(args: argparse.Namespace, job_params: dict[str, Any], shards: int) -> Sequence[bytes]:
    return file_shards(args.file, shards, b"\n")


def count_lines(body: bytes, pattern: str, ignore_case: bool = False) -> int:
    if not body:
        return 0
    lines = decode(body).split("\n")
    if body.endswith(b"\n"):
        lines.pop()
    search = compiled(pattern, ignore_case).search
    return sum(1 for line in lines if search(line))


def run(body: bytes, job_params: dict[str, Any]) -> int:
    return count_lines(body, job_params["pattern"], bool(job_params.get("ignore_case")))


def join(results: list[int], job_params: dict[str, Any]) -> int:
    return sum(results)


def render(result: int, job_params: dict[str, Any]) -> str:
    return f"{result} lines match {job_params['pattern']!r}"
