"""The chaos and security suite, on the simulated classroom every suite shares.

Environment:
``CHAOS_JOBS``     jobs per fault kind (default 10; ``make chaos-ci`` runs 1)
``CHAOS_RESULTS``  if set, the figures table is also written to this file (``make chaos``
                   sets it to tests/chaos/RESULTS.md)

The room, and site.yml converged on it once per run, come from ``support.room``
(``room``, ``converged``, ``creds``): the secrets audit reads that converge's -vvv
output and the ``ps`` samples taken through it. The suite acts as the room's eight
students (``support.jobs.STUDENTS``, the simulated classroom's roster); a room whose
roster lacks one of them fails every test here, it is never provisioned differently.

``figures`` and ``fsscan`` are this suite's own helpers, imported by name from this
folder (pytest puts a conftest's folder on the import path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import figures  # tests/chaos/figures.py
import pytest
from support import nodes
from support.jobs import STUDENTS

COPIES = 5  # a 5.6 MB corpus: a few seconds per job, so faults land mid-job
WORD = "more"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not figures.ROWS:
        return
    text = figures.render(" ".join(sys.argv))
    terminalreporter.write_sep("=", "chaos figures")
    terminalreporter.write_line(text)
    out = os.environ.get("CHAOS_RESULTS")
    if out:
        Path(out).write_text(text)
        terminalreporter.write_line(f"written to {out}")


@pytest.fixture(scope="session", autouse=True)
def every_student_in_the_roster(room: nodes.Room) -> None:
    """The suite's figures are per student of the simulated classroom's roster."""
    missing = sorted(set(STUDENTS) - set(room.students))
    if missing:
        pytest.fail(
            f"the room's roster ({nodes.INVENTORY}) lacks {missing}: the chaos suite runs as "
            f"{', '.join(STUDENTS)} (the roster tests/harness/classroom.py writes)"
        )


@pytest.fixture(scope="session")
def corpus(room: nodes.Room, converged, shakespeare: Path) -> tuple[str, int]:
    """corpus.txt in every student's home on the head; grep's count of WORD in it."""
    text = shakespeare.read_bytes() * COPIES
    grep = subprocess.run(
        ["grep", "-ow", WORD], input=text, capture_output=True, env={"LC_ALL": "C.UTF-8"}
    )
    expected = len(grep.stdout.splitlines())
    assert expected > 0
    for name in STUDENTS:
        ssh = ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS]
        subprocess.run(
            [*ssh, f"{name}@{room.ips[room.head]}", "cat > corpus.txt"],
            input=text,
            check=True,
            timeout=120,
        )
    return "corpus.txt", expected
