"""``pimq sample NAME [--copies N] > FILE``: the course's sample data.

The playbook puts the samples beside the package's venv on the head node
only (``/opt/pimq/samples/<name>.txt`` beside ``/opt/pimq/venv``; the wheel
that travels to every Pi does not carry them).
``pimq sample shakespeare --copies 40 > corpus.txt`` makes the 45 MB corpus of
the classic word-count exercise.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import BinaryIO

from pimq.errors import UsageError

#: what a name may be given as, and the file it means
ALIASES = {"shakespeare": "tinyshakespeare"}
MAX_COPIES = 1000


def samples_dir() -> Path:
    """``$PIMQ_SAMPLES_DIR``, else ``samples/`` beside the venv pimq runs from."""
    env = os.environ.get("PIMQ_SAMPLES_DIR")
    return Path(env) if env else Path(sys.prefix).parent / "samples"


def available() -> list[str]:
    try:
        return sorted(p.stem for p in samples_dir().glob("*.txt"))
    except OSError:
        return []


def sample_path(name: str) -> Path:
    names = available()
    if not names:
        raise UsageError(
            f"no samples on this machine ({samples_dir()} is empty or missing): "
            "samples are installed on the head node"
        )
    stem = ALIASES.get(name, name)
    if stem not in names:
        raise UsageError(f"no sample {name!r} (available: {', '.join(names)})")
    return samples_dir() / f"{stem}.txt"


def write_sample(name: str, copies: int, out: BinaryIO) -> None:
    if not 1 <= copies <= MAX_COPIES:
        raise UsageError(f"--copies must be between 1 and {MAX_COPIES}")
    path = sample_path(name)
    for _ in range(copies):
        with path.open("rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)


def sample(name: str | None, copies: int) -> int:
    """The ``pimq sample`` command: the exit code."""
    if name is None:
        names = available()
        for n in names:
            size = (samples_dir() / f"{n}.txt").stat().st_size
            print(f"{n:<20} {size:>12,} bytes")
        if not names:
            print(f"no samples in {samples_dir()}", file=sys.stderr)
        return 0
    if sys.stdout.isatty():
        raise UsageError(
            f"pimq sample writes the data to its output: redirect it to a file, "
            f"e.g. pimq sample {name} --copies {copies} > corpus.txt"
        )
    write_sample(name, copies, sys.stdout.buffer)
    sys.stdout.flush()
    return 0
