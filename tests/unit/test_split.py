from __future__ import annotations

import itertools
import os
import tempfile
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimq.jobs import split
from pimq.jobs.split import WHITESPACE, split_bytes, split_lines, split_range


def check_pieces(data: bytes, pieces: list[bytes], shards: int, seps: bytes) -> None:
    assert b"".join(pieces) == data
    assert 1 <= len(pieces) <= shards
    for piece in pieces[:-1]:
        assert piece and piece[-1] in seps
    if data:
        assert all(pieces)


@pytest.mark.parametrize(
    "data",
    [b"", b"a", b"word", b"a b", b"  ", b"a\r\nb\r\n", b"no trailing newline", "é ü ß".encode()],
)
@pytest.mark.parametrize("shards", [1, 2, 3, 10])
def test_edge_cases(data: bytes, shards: int) -> None:
    check_pieces(data, split_bytes(data, shards), shards, WHITESPACE)


def test_empty_input_is_one_empty_shard() -> None:
    assert split_bytes(b"", 5) == [b""]


def test_fewer_bytes_than_shards() -> None:
    assert split_bytes(b"a b", 10) == [b"a ", b"b"]


def test_never_cuts_inside_a_word_or_character() -> None:
    data = ("\u03b1\u03b2\u03b3 " * 100).encode()
    for piece in split_bytes(data, 7):
        piece.decode("utf-8")
        assert piece.startswith("\u03b1".encode())


def test_lines_cut_only_after_newline() -> None:
    data = b"one two\r\nthree four\nfive"
    pieces = split_lines(data, 3)
    assert pieces == [b"one two\r\n", b"three four\n", b"five"]


def test_shards_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_bytes(b"a", 0)


@given(st.binary(max_size=300), st.integers(1, 20))
def test_split_bytes_properties(data: bytes, shards: int) -> None:
    check_pieces(data, split_bytes(data, shards), shards, WHITESPACE)


@given(st.binary(max_size=300), st.integers(1, 20))
def test_split_lines_properties(data: bytes, shards: int) -> None:
    check_pieces(data, split_lines(data, shards), shards, b"\n")


@given(st.integers(0, 10**6), st.integers(0, 10**4), st.integers(1, 50))
def test_split_range_covers_exactly(start: int, length: int, shards: int) -> None:
    ranges = split_range(start, start + length, shards)
    assert 1 <= len(ranges) <= shards
    assert ranges[0][0] == start and ranges[-1][1] == start + length
    for (a, b), (c, _d) in itertools.pairwise(ranges):
        assert a < b == c


@pytest.mark.parametrize("window", [1, 3, 64 * 1024])
@settings(max_examples=60)
@given(
    data=st.binary(max_size=400) | st.text(alphabet=" \nab\u03b1", max_size=300).map(str.encode),
    shards=st.integers(1, 20),
    seps=st.sampled_from([WHITESPACE, b"\n"]),
)
def test_split_file_cuts_where_split_bytes_does(window, data, shards, seps) -> None:
    """Read through windows of any size, a file is cut exactly like its bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.txt")
        with open(path, "wb") as f:
            f.write(data)
        with patch.object(split, "WINDOW", window):
            pieces = split.split_file(path, shards, seps)
        assert list(pieces) == split_bytes(data, shards, seps)
        assert pieces[-1:] == [split_bytes(data, shards, seps)[-1]]


def test_split_file_refuses_a_file_that_changed(tmp_path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"one two three four\n")
    pieces = split.split_file(str(path), 2)
    assert pieces[0] == b"one two three "
    path.write_bytes(b"ONE TWO THREE FOUR\n!")
    with pytest.raises(ValueError, match="changed while the job ran"):
        pieces[1]
