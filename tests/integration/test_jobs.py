"""Every job kind end to end through a real broker and a real worker."""

from __future__ import annotations

import pytest
from support.helpers import SHAKESPEARE, grep_count, run_json


@pytest.fixture
def worker(start_worker, student):
    return start_worker([student.vhost], processes=2)


def test_wordcount_equals_grep(cli, worker, tmp_path):
    doc = run_json(cli, "wordcount", "--word", "more", str(SHAKESPEARE), "--shards", "7")
    assert doc["result"] == grep_count(SHAKESPEARE, "more")
    assert doc["shards"] == 7
    assert sum(doc["workers"].values()) == 7
    assert doc["compute_seconds"] > 0 and doc["parallelism"] > 0


def test_wordcount_top_and_ignore_case(cli, worker, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"the The THE cat\r\ncat dog the\n\xc3\xa9t\xc3\xa9 \xc3\xa9t\xc3\xa9")
    doc = run_json(cli, "wordcount", "--top", "3", "-i", str(path), "--shards", "4")
    assert doc["result"] == [["the", 4], ["cat", 2], ["été", 2]]
    doc = run_json(cli, "wordcount", "--word", "the", "--ignore-case", str(path))
    assert doc["result"] == 4


@pytest.mark.parametrize("data", [b"", b"more", b"more more", b"a\r\nmore\r\n"])
def test_tiny_files_with_many_shards(cli, worker, tmp_path, data):
    path = tmp_path / "t.txt"
    path.write_bytes(data)
    doc = run_json(cli, "wordcount", "--word", "more", str(path), "--shards", "8")
    assert doc["result"] == data.count(b"more")
    assert 1 <= doc["shards"] <= 8


def test_grep_primes_pi_sleep_noop(cli, worker, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("alpha\nbeta\nalphabet\ngamma")
    assert run_json(cli, "grep", "^alpha", str(path), "--shards", "3")["result"] == 2
    assert run_json(cli, "primes", "1000000", "--shards", "5")["result"] == 78498
    a = run_json(cli, "pi", "--samples", "300000", "--seed", "3", "--shards", "2")["result"]
    b = run_json(cli, "pi", "--samples", "300000", "--seed", "3", "--shards", "3")["result"]
    assert a == b and 3.1 < a["pi"] < 3.2
    assert run_json(cli, "sleep", "ab", "cde", "--per-char", "0")["result"] == 5
    assert run_json(cli, "noop", "--shards", "50")["result"] == 50


def test_custom_kind_from_jobs_dir(cli, student, start_worker, jobs_dir):
    (jobs_dir / "length.py").write_text(
        "HELP = 'total length of the words'\n"
        "def add_arguments(parser):\n    parser.add_argument('words', nargs='+')\n"
        "def split(args, params, shards):\n    return [w.encode() for w in args.words]\n"
        "def run(body, params):\n    return len(body)\n"
        "def join(results, params):\n    return sum(results)\n"
    )
    start_worker([student.vhost])
    assert run_json(cli, "length", "abc", "de", "f")["result"] == 6
    out = cli.run("run", "length", "--help")
    assert "total length of the words" in out.stdout


def test_text_output_shows_timings(cli, worker, tmp_path):
    out = cli.run("run", "wordcount", "--word", "more", str(SHAKESPEARE), "--shards", "3")
    assert out.returncode == 0, out.stderr
    assert f"'more' occurs {grep_count(SHAKESPEARE, 'more')} times" in out.stdout
    assert "3 shard(s) in" in out.stderr and "speedup" in out.stderr
    assert "shards per worker:" in out.stderr


def test_many_quick_shards_exactly_once(cli, worker):
    # quick shards travel to the pool in batches: still one result per shard
    doc = run_json(cli, "primes", "200000", "--shards", "1000")
    assert doc["result"] == 17984
    assert doc["shards"] == 1000 and sum(doc["workers"].values()) == 1000
