"""The student guide (docs/lab/*.md), every page, run as a student on the simulated room.

A student logs in to the head over SSH and types each page's console blocks
(one bash per block); the outputs must be the page's. The teacher's broker
restart is run as root on the head. Pages run in order (lab 2 uses lab 1's
script), as carol, whom no other classroom test uses.
"""

from __future__ import annotations

import pytest
from support import guide, nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(1200)]
STUDENT = "carol"
PAGES = sorted(p.name for p in guide.GUIDE.glob("[0-9]*.md"))


@pytest.fixture(scope="module")
def student_home(room: nodes.Room, converged) -> str:
    assert STUDENT in room.students
    nodes.ssh(room, STUDENT, "rm -f ./*.py ./*.txt ./*.json")  # a fresh start for the guide
    return STUDENT


def teacher(room: nodes.Room):
    def act(block: guide.Block) -> None:
        assert [c.text for c in block.commands] == ["sudo systemctl restart rabbitmq-server"]
        nodes.on_node(room.head, "systemctl restart rabbitmq-server", timeout=300)
        nodes.on_node(room.head, "rabbitmqctl await_startup --timeout 120", timeout=300)

    return act


@pytest.mark.parametrize("page", PAGES)
def test_guide_page(room: nodes.Room, student_home: str, page: str) -> None:
    def run_bash(text: str) -> str:
        return nodes.ssh(room, student_home, "bash -s", input=text, check=False, timeout=900).stdout

    buddy = "pi2" if "pi2" in room.workers else room.workers[0]
    failures = guide.run_page(page, run_bash, teacher(room), replace={"pi2": buddy})
    assert not failures, "\n".join(map(str, failures))
