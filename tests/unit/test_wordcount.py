from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimq.jobs import wordcount
from pimq.jobs.split import split_bytes

# Word characters and separators that differ between Python's \w and grep's
# C.UTF-8 notion of a word (combining marks, superscripts, ...), CRLF, tabs.
PIECES = [
    "more",
    "More",
    "MORE",
    "mores",
    "amore",
    "more_",
    "_more",
    "more2",
    "2more",
    "é",
    "ß",
    "straße",
    "Ünïcödé",
    "μορε",
    "\u0431\u043e",
    "日本",
    "e\u0301",
    "x\u0345y",
    "²",
    "½",
    "\u24b6",
    "don't",
    "a-b",
    "more.",
    "(more)",
    "—",
    "\u00a0",
    "\u3000",
    " ",
    " ",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    ",",
    ";",
]
WORDS = ["more", "More", "é", "straße", "μορε", "日本", "e", "x", "y", "a", "2", "_more"]


def text_strategy() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(PIECES), max_size=80).map("".join)


def sharded_count(data: bytes, word: str, ignore_case: bool, shards: int) -> int:
    params = {"word": word, "ignore_case": ignore_case}
    results = [wordcount.run(piece, params) for piece in split_bytes(data, shards)]
    return wordcount.join(results, params)


def grep_count(path: Path, word: str, ignore_case: bool) -> int:
    args = ["grep", "-ow"] + (["-i"] if ignore_case else []) + ["--", word, str(path)]
    out = subprocess.run(args, capture_output=True, env={"LC_ALL": "C.UTF-8"}, check=False)
    return out.stdout.count(b"\n")


@given(text_strategy(), st.sampled_from(WORDS), st.booleans(), st.integers(1, 12))
def test_split_then_count_equals_single_pass(text: str, word: str, ic: bool, shards: int):
    data = text.encode()
    assert sharded_count(data, word, ic, shards) == wordcount.run(
        data, {"word": word, "ignore_case": ic}
    )


@given(text_strategy(), st.booleans(), st.integers(1, 12))
def test_top_split_equals_single_pass(text: str, ic: bool, shards: int):
    data = text.encode()
    params = {"top": 5, "ignore_case": ic}
    whole = wordcount.join([wordcount.run(data, params)], params)
    parts = [wordcount.run(p, params) for p in split_bytes(data, shards)]
    assert wordcount.join(parts, params) == whole


@settings(max_examples=60)
@given(text_strategy(), st.sampled_from(WORDS), st.booleans())
def test_count_equals_grep(tmp_path_factory, text: str, word: str, ic: bool):
    if ic and not word.isascii():
        ic = False  # grep's and Python's non-ASCII case folding differ (documented)
    path = tmp_path_factory.mktemp("g") / "t.txt"
    data = text.encode()
    path.write_bytes(data)
    assert wordcount.run(data, {"word": word, "ignore_case": ic}) == grep_count(path, word, ic)


@pytest.mark.parametrize("seed", range(5))
def test_large_generated_text_equals_grep(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    text = "".join(rnd.choice(PIECES) for _ in range(20000))
    data = text.encode() + (b"" if seed % 2 else b"\xff\xfe more \xc3")  # invalid UTF-8 too
    path = tmp_path / "t.txt"
    path.write_bytes(data)
    for word in ("more", "é", "straße", "x"):
        expected = grep_count(path, word, False)
        assert sharded_count(data, word, False, 1 + seed * 3) == expected
    assert sharded_count(data, "more", True, 4) == grep_count(path, "more", True)


def test_shakespeare_equals_grep(shakespeare: Path) -> None:
    data = shakespeare.read_bytes()
    assert sharded_count(data, "more", False, 9) == grep_count(shakespeare, "more", False)


def test_top_ranks_by_count_then_word() -> None:
    params = {"top": 3, "ignore_case": True}
    parts = [wordcount.run(b"b a B c", params), wordcount.run(b"c a b", params)]
    assert wordcount.join(parts, params) == [["b", 3], ["a", 2], ["c", 2]]
