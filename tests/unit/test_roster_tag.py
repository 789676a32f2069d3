"""``--tags roster`` applies a roster change: every step of site.yml that reads the
roster runs under it (inventory/example/README.md, "Smaller runs")."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# The variables a role reads the roster through (roles/pimq/defaults/main.yml and
# the preflight's facts), and the students' password files.
ROSTER = re.compile(
    r"\bpimq_((present_|absent_)?students(_csv)?|roster_entries|student_passwords)\b"
    r"|credentials/students"
)


def plays() -> list[dict]:
    out = []
    for entry in yaml.safe_load((REPO / "playbooks/site.yml").read_text()):
        out += yaml.safe_load(
            (REPO / "playbooks" / entry["ansible.builtin.import_playbook"]).read_text()
        )
    return out


def roles_and_tags() -> list[tuple[str, set[str]]]:
    """Each role of site.yml with the tags of its play."""
    return [
        (role["role"] if isinstance(role, dict) else role, set(play.get("tags", [])))
        for play in plays()
        for role in play.get("roles", [])
    ]


def reads_the_roster(role: str) -> bool:
    folder = REPO / "roles" / role
    files = [
        p
        for sub in ("tasks", "templates", "handlers")
        for p in (folder / sub).rglob("*")
        if p.is_file()
    ]
    return any(ROSTER.search(p.read_text()) for p in files)


def test_every_step_that_reads_the_roster_runs_under_the_roster_tag():
    readers = {name: tags for name, tags in roles_and_tags() if reads_the_roster(name)}
    # The test reads what it claims to: the three steps named in the README at least.
    assert {"pimq_students", "pimq_head", "pimq_worker"} <= set(readers), readers
    untagged = {role: tags for role, tags in readers.items() if not tags & {"roster", "always"}}
    assert untagged == {}, f"reads the roster but does not run under --tags roster: {untagged}"


def test_the_roster_tag_leaves_out_what_does_not_read_it():
    tagged = {name for name, tags in roles_and_tags() if "roster" in tags}
    assert tagged == {name for name in tagged if reads_the_roster(name)}, tagged
