from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pimq.jobs import grep, noop, pi, primes, sleep
from pimq.jobs.split import split_lines


def run_job(module, args, shards):
    params = module.params(args) if hasattr(module, "params") else {}
    bodies = module.split(args, params, shards)
    return module.join([module.run(b, params) for b in bodies], params), len(bodies)


@given(
    st.lists(st.sampled_from(["ab", "b", "", "a\r", "x y", "é"]), max_size=30),
    st.booleans(),
    st.integers(1, 10),
)
def test_grep_split_equals_single_pass(lines: list[str], trailing: bool, shards: int):
    data = ("\n".join(lines) + ("\n" if trailing and lines else "")).encode()
    params = {"pattern": "a|é", "ignore_case": False}
    whole = grep.run(data, params)
    parts = [grep.run(p, params) for p in split_lines(data, shards)]
    assert grep.join(parts, params) == whole


@pytest.mark.parametrize(
    "data", [b"", b"a", b"a\n", b"\n", b"a\r\nb\r\n", b"b\na\nab", b"x\n\nax\n"]
)
@pytest.mark.parametrize("pattern", ["a", "^a", "a$", "^$", ""])
def test_grep_counts_like_grep(tmp_path: Path, data: bytes, pattern: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    out = subprocess.run(
        ["grep", "-c", "-E", "--", pattern, str(path)],
        capture_output=True,
        env={"LC_ALL": "C.UTF-8"},
        text=True,
    )
    assert grep.run(data, {"pattern": pattern}) == int(out.stdout)


def test_grep_bad_regex_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    args = argparse.Namespace(pattern="(unclosed", file=str(tmp_path / "f"), ignore_case=False)
    with pytest.raises(ValueError, match="bad regular expression"):
        grep.params(args)


def test_missing_file_is_a_value_error() -> None:
    args = argparse.Namespace(pattern="a", file="/nonexistent/x", ignore_case=False)
    with pytest.raises(ValueError, match="no such file"):
        grep.params(args)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"text\0with a NUL", "not a text file"),
        (b"caf\xe9 latin-1, not UTF-8", "not UTF-8 text (byte 3 is invalid)"),
    ],
)
def test_binary_or_non_utf8_file_is_a_value_error(tmp_path: Path, data: bytes, message: str):
    (tmp_path / "f").write_bytes(data)
    args = argparse.Namespace(pattern="a", file=str(tmp_path / "f"), ignore_case=False)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        grep.params(args)


def test_utf8_cut_at_the_end_of_the_sniffed_part_is_still_text(tmp_path: Path) -> None:
    from pimq.jobs._text import SNIFF_BYTES, check_file

    path = tmp_path / "f"
    path.write_bytes(b"a" * (SNIFF_BYTES - 1) + "é".encode())  # é straddles the boundary
    check_file(str(path))


@pytest.mark.parametrize(
    ("stop", "expected"), [(0, 0), (2, 0), (3, 1), (100, 25), (10**6, 78498), (10**6 + 1, 78498)]
)
def test_primes_known_counts(stop: int, expected: int) -> None:
    for shards in (1, 3, 16):
        args = argparse.Namespace(start=0, stop=stop)
        assert run_job(primes, args, shards)[0] == expected


@given(st.integers(0, 3000), st.integers(0, 3000), st.integers(1, 9))
def test_primes_split_matches_naive(a: int, length: int, shards: int) -> None:
    naive = sum(
        1 for n in range(a, a + length) if n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))
    )
    assert run_job(primes, argparse.Namespace(start=a, stop=a + length), shards)[0] == naive


def test_pi_reproducible_and_independent_of_shards() -> None:
    args = argparse.Namespace(samples=250_001, seed=7)
    one, _ = run_job(pi, args, 1)
    four, n = run_job(pi, args, 4)
    assert n == 3  # three blocks of 100,000
    assert one == four
    assert abs(one["pi"] - 3.14159) < 0.02
    assert run_job(pi, argparse.Namespace(samples=250_001, seed=8), 2)[0] != one


def test_sleep_one_shard_per_message_or_cycled() -> None:
    args = argparse.Namespace(messages=["ab", "c"], per_char=0.0, shards=None)
    assert run_job(sleep, args, 99) == (3, 2)
    args.shards = 5
    result, n = run_job(sleep, args, 5)
    assert (result, n) == (2 + 1 + 2 + 1 + 2, 5)


def test_noop() -> None:
    assert run_job(noop, argparse.Namespace(), 17) == (17, 17)


def test_results_are_json() -> None:
    for value in (run_job(primes, argparse.Namespace(start=0, stop=50), 3)[0],):
        json.dumps(value)
