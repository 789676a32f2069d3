"""Whose is an account (roles/pimq/module_utils/pimq_owners.py: the decision
pimq_accounts and preflight's pimq_account_owners share), the config-file
evidence read from a real folder tree, and preflight's filters around it
(pimq_roster_accounts, pimq_owner_errors)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROLES = Path(__file__).resolve().parents[2] / "roles"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


owners = load(ROLES / "pimq" / "module_utils" / "pimq_owners.py")
roster = load(ROLES / "pimq" / "filter_plugins" / "pimq_roster.py")
Found = owners.Found
MARKER = "pimq-students"


def legacy_alice(**changes) -> Found:
    """An account as pimq before the marker made it: uid 1001, own group, home,
    GECOS, pimq's config file; `changes` alters it."""
    fields = dict(
        name="alice", uid=1001, gid=1001, primary_group="alice", gecos="Alice Liddell",
        home="/home/alice", group_gid=1001, group_members=(), marked=False, pimq_config=True,
    )  # fmt: skip
    fields.update(changes)
    return Found(**fields)


def judge(found: Found, comment: str | None = "Alice Liddell", **kw) -> tuple[str, str]:
    v = owners.verdict(found, comment, "/home", MARKER, **kw)
    return v.kind, v.reason


def test_a_name_nobody_has_is_free() -> None:
    assert judge(Found("alice")) == ("free", "")


@pytest.mark.parametrize(
    ("name", "gid"), [("sudo", 27), ("disk", 6), ("shadow", 42), ("docker", 998)]
)
def test_an_existing_group_is_never_a_students_primary_group(name: str, gid: int) -> None:
    kind, reason = judge(Found(name, group_gid=gid, group_members=("pi",)), name)
    assert kind == "refused"
    assert f"a group {name} (gid {gid}) exists" in reason


def test_a_marked_account_is_pimqs_whatever_it_looks_like_now() -> None:
    # Its full name changed in the roster, its config is gone: still pimq's to update.
    found = legacy_alice(marked=True, gecos="Alice L.", pimq_config=False)
    assert judge(found)[0] == "pimq"


def test_an_earlier_pimqs_account_is_recognised_by_what_pimq_put_there() -> None:
    kind, reason = judge(legacy_alice())
    assert kind == "legacy"
    assert "earlier pimq" in reason


def test_a_removed_students_full_name_is_not_checked() -> None:
    assert judge(legacy_alice(gecos="whatever"), comment=None)[0] == "legacy"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"pimq_config": False}, "it has no pimq config file"),
        ({"gecos": "Teacher"}, "its full name is 'Teacher', not 'Alice Liddell'"),
        ({"home": "/srv/alice"}, "its home is /srv/alice"),
        ({"uid": 999}, "uid 999 is a system account's"),
        ({"gid": 27, "primary_group": "sudo"}, "its primary group sudo is not its own"),
        ({"group_members": ("alice", "bob")}, "its primary group alice is not its own"),
        ({"gid": 900, "group_gid": 900}, "its primary group alice is not its own"),
    ],
)
def test_anything_else_is_someone_elses_account(changes: dict, why: str) -> None:
    kind, reason = judge(legacy_alice(**changes))
    assert kind == "refused"
    assert reason.startswith("a user alice (uid ")
    assert f"not in group {MARKER}" in reason and why in reason


def test_a_hand_made_login_lists_every_reason() -> None:
    teacher = Found(
        "alice", uid=1000, gid=1000, primary_group="alice", gecos="", home="/home/alice",
        group_gid=1000, pimq_config=False,
    )  # fmt: skip
    kind, reason = judge(teacher)
    assert kind == "refused"
    assert "its full name is '', not 'Alice Liddell'" in reason
    assert "it has no pimq config file" in reason


def test_on_a_node_where_pimq_makes_no_account_every_user_is_refused() -> None:
    for found in (legacy_alice(), legacy_alice(marked=True)):
        kind, reason = judge(found, creates_accounts=False)
        assert kind == "refused" and "pimq makes accounts on the head only" in reason
    assert judge(Found("alice"), creates_accounts=False)[0] == "free"
    assert judge(Found("alice", group_gid=5), creates_accounts=False)[0] == "refused"


def test_login_defs_bounds(tmp_path: Path) -> None:
    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nUID_MIN\t\t 2000\nGID_MIN 3000\nUID_MAX 60000\n")
    assert owners.login_defs(str(defs)) == (2000, 3000)
    assert owners.login_defs(str(tmp_path / "missing")) == (1000, 1000)


def test_config_evidence_is_a_regular_file_of_the_user_with_pimqs_header(tmp_path: Path) -> None:
    uid = os.getuid()
    home = tmp_path / "alice"
    (home / ".config" / "pimq").mkdir(parents=True)
    config = home / ".config" / "pimq" / "config.yaml"
    path = ".config/pimq/config.yaml"
    assert not owners.has_pimq_config(str(home), path, "alice", uid)  # missing
    config.write_text("# pimq client configuration of alice (Ansible managed).\nhost: head\n")
    assert owners.has_pimq_config(str(home), path, "alice", uid)
    assert not owners.has_pimq_config(str(home), path, "bob", uid)  # another's header
    assert not owners.has_pimq_config(str(home), path, "alice", uid + 1)  # not theirs
    config.write_text("host: head\n")
    assert not owners.has_pimq_config(str(home), path, "alice", uid)  # not pimq's
    # A symlink is never followed, at the file or at a folder on the way.
    real = tmp_path / "real.yaml"
    real.write_text("# pimq client configuration of alice (x).\n")
    config.unlink()
    config.symlink_to(real)
    assert not owners.has_pimq_config(str(home), path, "alice", uid)
    (home / ".config" / "pimq" / "config.yaml").unlink()
    os.rename(home / ".config", tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "pimq" / "config.yaml").write_text(real.read_text())
    (home / ".config").symlink_to(tmp_path / "elsewhere")
    assert not owners.has_pimq_config(str(home), path, "alice", uid)
    assert not owners.has_pimq_config(str(home), "../x", "alice", uid)


def test_the_header_pimq_checks_is_the_one_pimq_head_writes() -> None:
    head = load(ROLES / "pimq_head" / "filter_plugins" / "pimq_head.py")
    written = head.student_config("alice", "head", 5672, "pw", "Ansible managed")
    assert written.startswith(owners.CONFIG_HEADER.format(name="alice"))


def test_preflight_asks_about_every_valid_name_even_in_a_bad_roster() -> None:
    entries = [
        {"name": "alice", "full_name": "Alice Liddell"},
        {"name": "bob"},
        {"name": "carol", "state": "absent", "full_name": "Carol"},
        {"name": "Bad Name"},
        {"name": "alice"},  # duplicate: asked once
        "not a mapping",
        {"full_name": "no name"},
    ]
    assert roster.roster_accounts(entries) == [
        {"name": "alice", "comment": "Alice Liddell"},
        {"name": "bob", "comment": "bob"},  # GECOS defaults to the name, as pimq_roster has it
        {"name": "carol", "comment": None},
    ]
    assert roster.roster_accounts("garbage") == []


def test_owner_errors_name_every_host_and_name() -> None:
    results = {
        "pi2": {"refused": ["docker: a group docker (gid 998) exists: ..."]},
        "head": {"refused": ["sudo: a group sudo (gid 27) exists: ...", "teacher: a user ..."]},
        "pi1": {"refused": []},
        "pi3": {
            "unreachable": True,
            "msg": "Failed to connect to the host via ssh: @@@ WARNING: REMOTE HOST "
            "IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.",
        },
    }
    errors = roster.owner_errors(results, "inventory/room-101")
    assert errors[:3] == [
        "head: sudo: a group sudo (gid 27) exists: ...",
        "head: teacher: a user ...",
        "pi2: docker: a group docker (gid 998) exists: ...",
    ]
    assert len(errors) == 4 and errors[3].startswith("pi3: not reached, nothing was sent to it")
    assert "make known-hosts INVENTORY=inventory/room-101 REPLACE=pi3" in errors[3]
    assert errors[3].endswith("Host key verification failed.)")
    long = {"pi1": {"unreachable": True, "msg": "x" * 1000 + " Host key verification failed."}}
    assert roster.owner_errors(long)[0].endswith("x Host key verification failed.)")
    assert len(roster.owner_errors(long)[0]) < 700
    assert roster.owner_errors({"pi1": {}}) == []
