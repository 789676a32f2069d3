"""The student guide (docs/lab/) run as a student against the private broker.

The same pages run on the simulated classroom (tests/classroom/test_guide.py);
here, on one broker, the buddy Pi page (02) has no buddy and the Celery page
(07) needs the head's Debian python3-celery and /opt/pimq/examples: both are
left to the classroom. The teacher's broker restart is a restart of the private broker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support import guide

REPO = Path(__file__).resolve().parents[2]
ONE_BROKER_PAGES = [
    "01-one-pi.md",
    "03-work-queues.md",
    "04-patterns.md",
    "05-cluster.md",
    "06-results-later.md",
]
CLASSROOM_ONLY_PAGES = ["02-buddy-pi.md", "07-celery.md"]


def student_shell(cli, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A student's shell: `pimq` and `python3` are this test's Python, a home of their own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pimq").write_text(f'#!/bin/sh\nexec {sys.executable} -m pimq "$@"\n')
    (bin_dir / "pimq").chmod(0o755)
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **cli.env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(home),
        "PIMQ_SAMPLES_DIR": str(REPO / "data"),
    }
    env.pop("PYTHONUNBUFFERED", None)  # as in a student's shell: output order is pimq's own
    return env, home


def test_every_page_is_run_somewhere():
    pages = sorted(p.name for p in guide.GUIDE.glob("[0-9]*.md"))
    assert pages == sorted([*ONE_BROKER_PAGES, *CLASSROOM_ONLY_PAGES])
    for page in pages:
        assert any(b.commands for b in guide.blocks(guide.GUIDE / page)), page


@pytest.mark.timeout(400)
@pytest.mark.parametrize("page", ONE_BROKER_PAGES)
def test_guide_page(page, broker, student, cli, start_worker, tmp_path):
    env, home = student_shell(cli, tmp_path)
    if page in ("05-cluster.md", "06-results-later.md"):
        start_worker([student.vhost], processes=2)
    restarted = []

    def teacher(block: guide.Block) -> None:
        assert [c.text for c in block.commands] == ["sudo systemctl restart rabbitmq-server"]
        broker.restart_app()
        restarted.append(block.line)

    failures = guide.run_page(page, guide.local_bash(env, home), teacher)
    denied = page == "03-work-queues.md" and "transient_nonexcl_queues" in broker.denied
    if denied:
        # RabbitMQ 4 as the tests configure it refuses the page's one transient
        # queue and says what it allows; every step before it is as printed, and
        # the page stops there (the restart that follows is shown with a transient
        # queue: tests/integration/test_labverbs.py restarts this broker)
        assert len(failures) == 1, "\n".join(map(str, failures))
        assert "--transient" in failures[0].command.text and failures[0].rc == "2"
        assert "does not permit transient queues" in " ".join(failures[0].actual)
        failures.clear()
    assert not failures, "\n".join(map(str, failures))
    if page == "03-work-queues.md" and not denied:
        assert restarted
