"""The word-count input: 40 copies of tinyshakespeare (45 MB) and grep's count of WORD."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pimq_fleet import REPO

DATA = REPO / "data" / "tinyshakespeare.txt"  # the sample corpus the repository ships
WORD = "more"
COPIES = 40


def corpus(out: Path) -> tuple[Path, int]:
    """40 copies of tinyshakespeare and the grep count of WORD in it."""
    path = out / "corpus-45MB.txt"
    data = DATA.read_bytes()
    if not path.exists() or path.stat().st_size != len(data) * COPIES:
        path.write_bytes(data * COPIES)
    grep = subprocess.run(
        f"grep -ow -- {WORD} {path} | wc -l",
        shell=True,
        capture_output=True,
        text=True,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return path, int(grep.stdout)
