"""Roster changes, applied as the admin does (``site.yml --tags roster``: the steps
that read the roster, inventory/example/README.md), touch exactly the students
concerned (a bad roster changing nothing is the chaos suite's:
tests/chaos/test_misuse.py; that every step reading the roster runs under the tag,
tests/unit/test_roster_tag.py)."""

from __future__ import annotations

import re

import pytest
from support import nodes
from support.students import Student

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(2400)]

# Names the room's roster does not hold (tests/harness/classroom.py ROSTER).
NEWCOMER, PREVIEWED = "ivan", "judy"


def roster_with(room: nodes.Room, **states) -> list[dict]:
    """The room's roster with some students' state changed or students added."""
    out = [dict(s) for s in room.roster]
    by_name = {s["name"]: s for s in out}
    key = room.roster[0].get("ssh_key")
    for name, state in states.items():
        if name in by_name:
            by_name[name]["state"] = state
        else:
            out.append({"name": name, "full_name": name.title(), "ssh_key": key, "state": state})
    return out


def mentions(items: set[str], name: str) -> set[str]:
    """State items that belong to one student (their name is one of the item's words)."""
    return {i for i in items if name in re.split(r"[\s@/]+", i)}


def test_remove_then_add_a_student_touches_exactly_theirs(converged, room, converge_vars, creds):
    victim = room.students[-1]
    before = nodes.room_state(room)
    assert mentions(before, victim)
    try:
        run = nodes.playbook(
            "site.yml",
            "--tags",
            "roster",
            extra_vars={**converge_vars, "pimq_students": roster_with(room, **{victim: "absent"})},
        )
        assert run.rc == 0, run.tail()
        removed_state = nodes.room_state(room)
        assert removed_state - before == set(), "removing a student added something"
        assert before - removed_state == mentions(before, victim), sorted(before - removed_state)
        assert nodes.ssh(room, victim, "true", check=False).returncode != 0

        newcomer = NEWCOMER
        with nodes.PsSampler(room.nodes) as sampler:
            run = nodes.playbook(
                "site.yml",
                "--tags",
                "roster",
                extra_vars={
                    **converge_vars,
                    "pimq_students": roster_with(room, **{victim: "absent", newcomer: "present"}),
                },
            )
        assert run.rc == 0, run.tail()
        added_state = nodes.room_state(room)
        assert removed_state - added_state == set(), "adding a student removed something"
        assert added_state - removed_state == mentions(added_state, newcomer), sorted(
            added_state - removed_state
        )
        fresh = nodes.credentials()
        assert newcomer in fresh.students
        assert sampler.leaks(fresh.all()) == [], "password in argv while adding a student"
        assert nodes.find_secrets(run.output, fresh.all()) == []
        # The newcomer can work at once.
        assert Student(room, newcomer).try_vhost()["consumed"] == f"hello {newcomer}"
    finally:
        run = nodes.playbook(
            "site.yml",
            "--tags",
            "roster",
            extra_vars={
                **converge_vars,
                "pimq_students": roster_with(room, **{NEWCOMER: "absent"}),
            },
        )
        assert run.rc == 0, run.tail()
        (nodes.INVENTORY / "credentials" / "students" / f"{NEWCOMER}.txt").unlink(missing_ok=True)
    assert nodes.room_state(room) == before
    assert nodes.credentials().students == creds.students, (
        "a re-added student must keep their password"
    )


def test_check_mode_previews_a_roster_change_without_applying_it(converged, room, converge_vars):
    """Admins dry-run a roster change first: it must not fail, and must change nothing."""
    before = nodes.room_state(room)
    roster = roster_with(room, **{room.students[-1]: "absent", PREVIEWED: "present"})
    try:
        run = nodes.playbook(
            "site.yml",
            "--tags",
            "roster",
            "--check",
            "--diff",
            extra_vars={**converge_vars, "pimq_students": roster},
        )
        assert run.rc == 0, run.tail()
        assert f"'user {PREVIEWED}: created'" in run.output, run.tail()
        assert f"'vhost {PREVIEWED}: created'" in run.output, run.tail()
        assert f"'vhost {room.students[-1]}: removed'" in run.output
        assert nodes.room_state(room) == before
    finally:
        # Lookups run even in check mode: forget the password made for the preview.
        (nodes.INVENTORY / "credentials" / "students" / f"{PREVIEWED}.txt").unlink(missing_ok=True)


def test_csv_roster_is_the_same_room(converged, room, converge_vars):
    """The room's roster given as a CSV file converges to the same room: nothing changes."""
    rosters = nodes.INVENTORY.parent / "rosters"
    rosters.mkdir(exist_ok=True)
    csv_file = rosters / f"{nodes.INVENTORY.name}-test.csv"
    rows = ["name,full_name,ssh_key,state"]
    for s in room.roster:
        rows.append(",".join(s.get(k, "") for k in ("name", "full_name", "ssh_key", "state")))
    csv_file.write_text("# written by test_csv_roster_is_the_same_room\n" + "\n".join(rows) + "\n")
    try:
        run = nodes.playbook(
            "site.yml",
            "--tags",
            "roster",
            extra_vars={
                **converge_vars,
                "pimq_students": [],
                "pimq_students_csv": f"rosters/{csv_file.name}",
            },
        )
        assert run.rc == 0, run.tail()
        assert run.total("changed") == 0, run.tail(80)
    finally:
        csv_file.unlink()
        if not any(rosters.iterdir()):
            rosters.rmdir()
