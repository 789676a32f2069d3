"""``pimq sample``: the course's sample data, written N times over."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pimq.client.sample import write_sample
from pimq.errors import UsageError


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "tinyshakespeare.txt").write_bytes(b"First Citizen:\nBefore we proceed\n")
    monkeypatch.setenv("PIMQ_SAMPLES_DIR", str(folder))
    return folder


def test_copies_are_the_sample_repeated(samples):
    out = io.BytesIO()
    write_sample("shakespeare", 3, out)
    assert out.getvalue() == b"First Citizen:\nBefore we proceed\n" * 3
    out = io.BytesIO()
    write_sample("tinyshakespeare", 1, out)  # the file's own name works too
    assert out.getvalue() == b"First Citizen:\nBefore we proceed\n"


def test_unknown_sample_names_the_ones_there_are(samples):
    with pytest.raises(UsageError, match=r"no sample 'hamlet' \(available: tinyshakespeare\)"):
        write_sample("hamlet", 1, io.BytesIO())


@pytest.mark.parametrize("copies", [0, -1, 1001])
def test_copies_out_of_range_are_refused(samples, copies):
    with pytest.raises(UsageError, match="--copies must be between 1 and 1000"):
        write_sample("shakespeare", copies, io.BytesIO())


def test_no_samples_here_says_where_they_are(tmp_path, monkeypatch):
    monkeypatch.setenv("PIMQ_SAMPLES_DIR", str(tmp_path / "none"))
    with pytest.raises(UsageError, match="samples are installed on the head node"):
        write_sample("shakespeare", 1, io.BytesIO())


def test_the_command_writes_to_a_redirected_output(samples, tmp_path):
    corpus = tmp_path / "corpus.txt"
    with corpus.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "pimq", "sample", "shakespeare", "--copies", "2"],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "PIMQ_SAMPLES_DIR": str(samples)},
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert corpus.read_bytes() == b"First Citizen:\nBefore we proceed\n" * 2
    listed = subprocess.run(
        [sys.executable, "-m", "pimq", "sample"],
        capture_output=True,
        text=True,
        env={**os.environ, "PIMQ_SAMPLES_DIR": str(samples)},
        check=False,
    )
    assert listed.returncode == 0
    assert listed.stdout.split() == ["tinyshakespeare", "33", "bytes"]
