"""wordcount: how often one word occurs, or the most frequent words.

A word is a maximal run of word characters as GNU grep defines them in the
C.UTF-8 locale (see :mod:`pimq.wordchars`), so ``--word W`` counts exactly
what ``LC_ALL=C.UTF-8 grep -ow W FILE | wc -l`` counts (``-i`` with
``--ignore-case``).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from functools import lru_cache
from typing import Any

from pimq.jobs._text import add_file_argument, check_file, decode, read_file
from pimq.split import split_bytes
from pimq.wordchars import WORD_CLASS

HELP = "count one word (--word W) or list the --top K words of a text file"

ASCII_WORD_CLASS = "0-9A-Za-z_"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--word", "-w", help="the word to count")
    what.add_argument("--top", type=int, metavar="K", help="list the K most frequent words")
    parser.add_argument("--ignore-case", "-i", action="store_true", help="ignore case")


def params(args: argparse.Namespace) -> dict[str, Any]:
    check_file(args.file)
    if args.word is not None:
        if args.word == "":
            raise ValueError("--word must not be empty")
        return {"word": args.word, "ignore_case": bool(args.ignore_case)}
    if args.top < 1:
        raise ValueError("--top must be at least 1")
    return {"top": args.top, "ignore_case": bool(args.ignore_case)}


def split(args: argparse.Namespace, job_params: dict[str, Any], shards: int) -> list[bytes]:
    return split_bytes(read_file(args.file), shards)


@lru_cache(maxsize=64)
def word_pattern(word: str, ignore_case: bool, ascii_only: bool) -> re.Pattern:
    flags = re.IGNORECASE if ignore_case else 0
    if ascii_only:
        cls = ASCII_WORD_CLASS
        return re.compile(
            f"(?<![{cls}])".encode() + re.escape(word.encode()) + f"(?![{cls}])".encode(),
            flags,
        )
    return re.compile(f"(?<![{WORD_CLASS}]){re.escape(word)}(?![{WORD_CLASS}])", flags)


@lru_cache(maxsize=1)
def token_pattern() -> re.Pattern:
    return re.compile(f"[{WORD_CLASS}]+")


def count_word(body: bytes, word: str, ignore_case: bool = False) -> int:
    # Fast path: ASCII text and an ASCII word never need decoding, and
    # case-insensitive ASCII matching is the same in grep and in re.
    if body.isascii() and word.isascii():
        return len(word_pattern(word, ignore_case, True).findall(body))
    return len(word_pattern(word, ignore_case, False).findall(decode(body)))


def count_words(body: bytes, ignore_case: bool = False) -> dict[str, int]:
    tokens = token_pattern().findall(decode(body))
    if ignore_case:
        tokens = [t.lower() for t in tokens]
    return dict(Counter(tokens))


def run(body: bytes, job_params: dict[str, Any]) -> Any:
    ignore_case = bool(job_params.get("ignore_case"))
    if "word" in job_params:
        return count_word(body, job_params["word"], ignore_case)
    return count_words(body, ignore_case)


def join(results: list[Any], job_params: dict[str, Any]) -> Any:
    if "word" in job_params:
        return sum(results)
    total: Counter[str] = Counter()
    for counts in results:
        total.update(counts)
    ranked = sorted(total.items(), key=lambda item: (-item[1], item[0]))
    return [[w, n] for w, n in ranked[: job_params["top"]]]


def render(result: Any, job_params: dict[str, Any]) -> str:
    if "word" in job_params:
        return f"{job_params['word']!r} occurs {result} times"
    width = max((len(w) for w, _ in result), default=0)
    return "\n".join(f"{n:>10}  {w:<{width}}" for w, n in result) or "(no words)"
