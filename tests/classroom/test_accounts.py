"""pimq never takes over an account it did not make (issue 14, Accounts): roster names
that are system groups or a teacher's own login are refused before any host changes;
pimq's own accounts are still updated and removed; accounts an earlier pimq made (no
marker yet) are recognised and keep working."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from support import nodes
from support.students import Student

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(2400)]

MARKER = "pimq-students"
TEACHER = "mshudson"  # a login the lab admin made by hand on the head
SYSTEM_GROUPS = ("sudo", "disk", "shadow", "docker")


def node_files(room: nodes.Room) -> dict[str, str]:
    """Every node's account databases (hashes: shadow holds password hashes)."""
    out = {}
    for node in room.nodes:
        out[node] = nodes.on_node(
            node, "sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow; ls -1 /home"
        ).stdout
    return out


def home_of(room: nodes.Room, user: str) -> str:
    """A home as it is: every path with type, mode, owner, group, size; the key file."""
    return nodes.on_node(
        room.head,
        f"find /home/{user} -printf '%p %y %m %u %g %s\\n' | sort; "
        f"cat /home/{user}/.ssh/authorized_keys",
    ).stdout


def roster_plus(room: nodes.Room, *names: str) -> list[dict]:
    key = room.roster[0]["ssh_key"]
    extra = [{"name": n, "full_name": n.title(), "ssh_key": key} for n in names]
    return [dict(s) for s in room.roster] + extra


def head_changes(run: nodes.PlaybookRun) -> list[str]:
    """The changes pimq_accounts reported on the head (its debug task's list)."""
    m = re.search(
        r"Report account changes on the head\][^\n]*\n[^\n]*\n    msg:\n((?:    - [^\n]*\n)+)",
        run.output,
    )
    if not m:
        return []
    return [line.strip()[2:].strip("'").replace("''", "'") for line in m.group(1).splitlines()]


@pytest.fixture
def hand_made(room: nodes.Room, converged):
    """A teacher's login made by hand on the head (home, key) and a `docker` group on
    one worker, as a Pi with Docker has; both gone afterwards."""
    worker = room.workers[-1]
    nodes.on_node(
        room.head,
        f"useradd --create-home --shell /bin/bash --comment 'Ms Hudson' {TEACHER} && "
        f"install -d -m 0700 -o {TEACHER} -g {TEACHER} /home/{TEACHER}/.ssh && "
        f"echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandMadeHandMadeHandMadeHandMadeHandMade00 "
        f"hudson@desk' > /home/{TEACHER}/.ssh/authorized_keys && "
        f"chown {TEACHER}: /home/{TEACHER}/.ssh/authorized_keys && "
        f"chmod 0600 /home/{TEACHER}/.ssh/authorized_keys",
    )
    had_docker = nodes.on_node(worker, "getent group docker", check=False).returncode == 0
    if not had_docker:
        nodes.on_node(worker, "groupadd --system docker")
    try:
        yield worker
    finally:
        nodes.on_node(room.head, f"userdel --remove {TEACHER}", check=False)
        if not had_docker:
            nodes.on_node(worker, "groupdel docker", check=False)


def test_names_pimq_did_not_make_are_refused_and_nothing_is_taken_over(
    room, converge_vars, hand_made
):
    worker = hand_made
    files, teacher = node_files(room), home_of(room, TEACHER)
    state = nodes.room_state(room)
    run = nodes.playbook(
        "site.yml",
        extra_vars={**converge_vars, "pimq_students": roster_plus(room, *SYSTEM_GROUPS, TEACHER)},
    )
    assert run.rc != 0, run.tail()
    assert "Preflight stopped the run, nothing was changed" in run.output, run.tail(80)
    # One message naming each, on every node that has it.
    for node in room.nodes:
        for group in ("sudo", "disk", "shadow"):
            assert f"{node}: {group}: a group {group} (gid " in run.output, (node, group)
    assert f"{worker}: docker: a group docker (gid " in run.output
    assert f"{room.head}: {TEACHER}: a user {TEACHER} (uid " in run.output
    assert f"exists that pimq did not make (not in group {MARKER}" in run.output
    # Before any host changed: nothing changed on any node, nothing taken over.
    assert run.total("changed") == 0, run.recap
    assert "pimq_head : Converge student accounts" not in run.output
    assert node_files(room) == files
    assert home_of(room, TEACHER) == teacher
    assert nodes.room_state(room) == state
    for name in SYSTEM_GROUPS:
        assert not (nodes.INVENTORY / "credentials" / "students" / f"{name}.txt").exists()


def test_the_module_itself_refuses_to_change_or_remove_what_pimq_did_not_make(room, hand_made):
    """pimq_accounts checks again before it changes or removes an account (a run of
    head.yml alone, an older preflight): it fails naming them and changes nothing."""
    files, teacher = node_files(room), home_of(room, TEACHER)
    args = {
        "accounts": [
            {"name": TEACHER, "comment": "Taken Over", "ssh_key": "", "config": "x: 1\n"},
            {"name": "disk", "comment": "disk", "ssh_key": "", "config": "x: 1\n"},
        ],
        "marker_group": MARKER,
    }
    for case in (args, {"absent": [TEACHER], "marker_group": MARKER}):
        proc = subprocess.run(
            [
                str(nodes.VENV_BIN / "ansible"), room.head, "-i", str(nodes.INVENTORY), "-b",
                "-m", "pimq_accounts", "-a", json.dumps(case),
            ],
            cwd=nodes.REPO, capture_output=True, text=True, timeout=300, check=False,
            env=dict(
                os.environ, ANSIBLE_CONFIG=str(nodes.REPO / "ansible.cfg"),
                ANSIBLE_LIBRARY=str(nodes.REPO / "roles/pimq/library"),
                ANSIBLE_MODULE_UTILS=str(nodes.REPO / "roles/pimq/module_utils"),
            ),
        )  # fmt: skip
        assert proc.returncode != 0, proc.stdout
        assert "not pimq's, nothing was changed" in proc.stdout, proc.stdout
        assert f"{TEACHER}: a user {TEACHER}" in proc.stdout
        assert ("disk: a group disk (gid 6) exists" in proc.stdout) == ("accounts" in case)
        assert node_files(room) == files
        assert home_of(room, TEACHER) == teacher


def test_an_account_pimq_made_is_updated_and_removed(room, converged, converge_vars):
    name = "oscar"  # not in the simulated classroom's roster (tests/harness/classroom.py)
    key = room.roster[0]["ssh_key"]
    entry = {"name": name, "full_name": "Oscar One", "ssh_key": key}
    roster = [dict(s) for s in room.roster]

    def head_run(entry_now: dict) -> nodes.PlaybookRun:
        run = nodes.playbook(
            "site.yml", "--tags", "students,head",
            extra_vars={**converge_vars, "pimq_students": [*roster, entry_now]},
        )  # fmt: skip
        assert run.rc == 0, run.tail(80)
        return run

    try:
        run = head_run(entry)
        assert f"account {name}: created" in head_changes(run)
        pw = nodes.on_node(room.head, f"getent passwd {name}").stdout.strip().split(":")
        assert pw[4] == "Oscar One" and pw[5] == f"/home/{name}"
        uid, gid = int(pw[2]), int(pw[3])
        own = nodes.on_node(room.head, f"getent group {name}").stdout.strip().split(":")
        assert int(own[2]) == gid >= 1000 and uid >= 1000  # its own new group
        assert name in nodes.on_node(room.head, f"getent group {MARKER}").stdout.strip().split(":")[
            3
        ].split(",")
        assert nodes.ssh(room, name, "id -un").stdout.strip() == name

        run = head_run({**entry, "full_name": "Oscar Two"})
        assert head_changes(run) == [f"account {name}: comment updated"]
        assert nodes.on_node(room.head, f"getent passwd {name}").stdout.split(":")[4] == "Oscar Two"
    finally:
        run = head_run({**entry, "state": "absent"})
        (nodes.INVENTORY / "credentials" / "students" / f"{name}.txt").unlink(missing_ok=True)
    assert f"account {name}: removed" in head_changes(run)
    for db in ("passwd", "group"):
        assert nodes.on_node(room.head, f"getent {db} {name}", check=False).returncode == 2
    assert nodes.on_node(room.head, f"test -e /home/{name}", check=False).returncode == 1
    members = nodes.on_node(room.head, f"getent group {MARKER}").stdout.strip().split(":")[3]
    assert name not in members.split(",")


def test_a_room_an_earlier_pimq_converged_keeps_working(room, converged, converge_vars):
    """Accounts without the marker, as every pimq before it left them: the first run
    marks them and changes nothing else; students log in and use their config."""
    students = room.students

    def accounts() -> str:
        return nodes.on_node(
            room.head,
            " ".join(f"getent passwd {s}; getent group {s};" for s in students)
            + " sha256sum "
            + " ".join(
                f"/home/{s}/.config/pimq/config.yaml /home/{s}/.ssh/authorized_keys"
                for s in students
            )
            + "; stat -c '%n %u %g %a' "
            + " ".join(f"/home/{s} /home/{s}/.config/pimq/config.yaml" for s in students),
        ).stdout

    for s in students:
        nodes.on_node(room.head, f"gpasswd --delete {s} {MARKER}")
    before = accounts()
    # The steps that read the roster (the head's accounts among them) as any run has them.
    run = nodes.playbook("site.yml", "--tags", "roster", extra_vars=converge_vars)
    assert run.rc == 0, run.tail(80)
    assert sorted(head_changes(run)) == sorted(
        f"account {s}: made by an earlier pimq (uid "
        + nodes.on_node(room.head, f"id -u {s}").stdout.strip()
        + "): marked as pimq's"
        for s in students
    )
    assert accounts() == before
    members = nodes.on_node(room.head, f"getent group {MARKER}").stdout.strip().split(":")[3]
    assert set(students) <= set(members.split(","))
    for s in students:
        assert Student(room, s).try_vhost()["consumed"] == f"hello {s}"
    # Marked once: the next roster run (the steps that read it) finds nothing to do.
    again = nodes.playbook("site.yml", "--tags", "roster", extra_vars=converge_vars)
    assert again.rc == 0 and again.total("changed") == 0, again.tail(80)
