"""``pimq experiment``: the same job on 1..N Pis against one process on the
head, on a real broker with three named workers."""

from __future__ import annotations

import importlib.util
import json

import pytest

PIS = ("pi1", "pi2", "pi3")


@pytest.fixture
def room(start_worker, student):
    return [
        start_worker([student.vhost], processes=1, extra_config=f"name: {name}\n") for name in PIS
    ]


def test_experiment_table_and_json(cli, room, tmp_path):
    png = tmp_path / "plot.png"
    out = cli.run(
        "experiment", "primes", "400000", "--upto", "3", "--repeats", "2", "--json",
        "--png", str(png), timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [row["pis"] for row in doc["rows"]] == [0, 1, 2, 3]
    assert all(len(row["walls"]) == 2 and row["median"] > 0 for row in doc["rows"])
    assert doc["rows"][0]["speedup"] == 1.0 and doc["shards"] == 12
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (doc["png"] == str(png)) == has_matplotlib
    assert png.exists() == has_matplotlib
    if has_matplotlib:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the table as students see it
    out = cli.run("experiment", "primes", "100000", "--upto", "2", "--repeats", "1", timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "primes: 8 shards, 1 run(s) each"
    assert [line.split()[0] for line in lines[2:5]] == ["head", "1", "2"]
    assert lines[2].endswith("1.00x")
    assert "1 Pi, run 1:" in out.stderr and "2 Pis, run 1:" in out.stderr


def test_experiment_errors(cli, room):
    out = cli.run("experiment", "primes", "1000")
    assert out.returncode == 2 and "--upto" in out.stderr
    out = cli.run("experiment", "primes", "1000", "--upto", "4", "--repeats", "1")
    assert out.returncode == 2 and "--upto 4: only 3 Pi(s) serve vhost" in out.stderr
    assert "one process on the head" not in out.stderr  # refused before anything ran
    out = cli.run("experiment", "primes", "1000", "--upto", "2", "--pis", "1")
    assert out.returncode == 2 and "leave out --pis" in out.stderr
