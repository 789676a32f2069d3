"""The chaos and security suite: its own classroom (prefix ``chaos``), 8 students.

Environment:
``CHAOS_JOBS``     jobs per fault kind (default 10; CI runs 2)
``CHAOS_SKIP_CONVERGE=1``  reuse the chaos room as it is (already converged with 8 students)
``CHAOS_RESULTS``  if set, the figures table is also written to this file (``make chaos``
                   sets it to tests/chaos/RESULTS.md)

The room is brought up (or reused) with ``tests/harness/classroom.py up --prefix chaos``
and ``playbooks/site.yml`` converged once per session with an 8-student roster, at
-vvv with ``ps`` sampled on every node through it (``site_run``: the secrets audit
reads its output and samples). A borrowed room (``make chaos-ci`` on the simulated
classroom) gets its own roster back at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("PIMQ_CLASSROOM", "chaos")
os.environ.setdefault(
    "PIMQ_INVENTORY", str(Path(__file__).resolve().parents[2] / "inventory" / "chaos")
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classroom"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures  # tests/chaos/figures.py
import nodes  # tests/classroom/nodes.py
import pytest
from jobs import STUDENTS, wait_worker_active

DATA = nodes.REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
COPIES = 5  # a 5.6 MB corpus: a few seconds per job, so faults land mid-job
WORD = "more"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: needs the chaos classroom (Docker)")


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


@pytest.fixture(scope="session")
def room() -> nodes.Room:
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True).returncode
    ):
        pytest.skip("no Docker engine: the chaos classroom cannot run here")
    up = subprocess.run(
        [sys.executable, str(nodes.REPO / "tests" / "harness" / "classroom.py"), "up",
         "--prefix", nodes.PREFIX, "--inventory", str(nodes.INVENTORY)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if up.returncode != 0:
        pytest.fail(f"chaos classroom did not come up:\n{up.stderr}")
    return nodes.load_room()


@dataclass
class SiteRun:
    """One converge of site.yml at -vvv (its whole output) with ``ps`` sampled on every
    node and on this machine through it (``tests/classroom/nodes.py`` PsSampler)."""

    run: nodes.PlaybookRun
    sampler: nodes.PsSampler
    first: bool  # the session's converge (False: a re-run made for the secrets audit)


def converge(room: nodes.Room, tmp: Path, first: bool) -> SiteRun:
    """site.yml with 8 students (the harness key for each), from a snapshot of worker/
    so the wheel does not change under our feet."""
    key = (nodes.REPO / ".classroom" / nodes.PREFIX / "id_ed25519.pub").read_text().strip()
    source = tmp / "worker"
    shutil.copytree(
        nodes.REPO / "worker",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist"),
    )
    roster = [
        {"name": n, "full_name": n.title(), "ssh_key": key, "state": "present"} for n in STUDENTS
    ]
    with nodes.PsSampler(room.nodes) as sampler:
        run = nodes.playbook(
            "site.yml",
            "-vvv",
            extra_vars={"pimq_students": roster, "pimq_runtime_source": str(source)},
            tmp_dir=tmp,
        )
    (tmp / "site-vvv.log").write_text(run.output)
    if run.rc != 0:
        pytest.fail(f"site.yml did not converge (rc={run.rc}):\n{run.tail(80)}")
    for node in room.workers:
        wait_worker_active(node)
    return SiteRun(run, sampler, first)


def give_back(room: nodes.Room, tmp: Path) -> None:
    """Leave a borrowed room (``make chaos-ci`` runs on the simulated classroom) with
    its own roster again: the students only this suite added removed, with their
    credentials, so the classroom suite finds the room its inventory describes."""
    own = {s["name"] for s in room.roster}
    extra = [n for n in STUDENTS if n not in own]
    run = nodes.playbook(
        "site.yml",
        extra_vars={
            "pimq_students": [*room.roster, *({"name": n, "state": "absent"} for n in extra)],
            "pimq_runtime_source": str(tmp / "worker"),
        },
        tmp_dir=tmp,
    )
    if run.rc != 0:
        pytest.fail(f"could not give the room its own roster back (rc={run.rc}):\n{run.tail(80)}")
    for name in extra:
        (nodes.INVENTORY / "credentials" / "students" / f"{name}.txt").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def session_converge(room: nodes.Room, tmp_path_factory) -> Iterator[SiteRun | None]:
    if os.environ.get("CHAOS_SKIP_CONVERGE") == "1":
        yield None
        return
    tmp = tmp_path_factory.mktemp("converge")
    yield converge(room, tmp, first=True)
    if nodes.PREFIX != "chaos":
        give_back(room, tmp)


@pytest.fixture(scope="session")
def converged(room: nodes.Room, session_converge: SiteRun | None) -> nodes.Room:
    """The room with site.yml converged once per session (unless CHAOS_SKIP_CONVERGE=1)."""
    return room


@pytest.fixture(scope="session")
def site_run(room: nodes.Room, session_converge: SiteRun | None, tmp_path_factory) -> SiteRun:
    """The session's converge; with CHAOS_SKIP_CONVERGE=1 a (re-)converge made now."""
    if session_converge is not None:
        return session_converge
    return converge(room, tmp_path_factory.mktemp("reconverge"), first=False)


@pytest.fixture(scope="session")
def creds(converged) -> nodes.Credentials:
    return nodes.credentials()


@pytest.fixture(scope="session")
def corpus(converged: nodes.Room) -> tuple[str, int]:
    """corpus.txt in every student's home on the head; grep's count of WORD in it."""
    if not DATA.exists():
        pytest.skip(f"no test data at {DATA}")
    text = DATA.read_bytes() * COPIES
    grep = subprocess.run(
        ["grep", "-ow", WORD], input=text, capture_output=True, env={"LC_ALL": "C.UTF-8"}
    )
    expected = len(grep.stdout.splitlines())
    assert expected > 0
    for name in STUDENTS:
        ssh = ["ssh", "-i", str(converged.key), *nodes.SSH_OPTIONS]
        subprocess.run(
            [*ssh, f"{name}@{converged.ips[converged.head]}", "cat > corpus.txt"],
            input=text,
            check=True,
            timeout=120,
        )
    return "corpus.txt", expected
