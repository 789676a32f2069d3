"""Pure logic of the roster filters (no classroom needed)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

PLUGIN = (
    Path(__file__).resolve().parents[2] / "roles" / "pimq" / "filter_plugins" / "pimq_roster.py"
)
spec = importlib.util.spec_from_file_location("pimq_roster", PLUGIN)
roster = importlib.util.module_from_spec(spec)
spec.loader.exec_module(roster)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1x alice@laptop"


def test_valid_roster_has_no_errors():
    assert (
        roster.roster_errors(
            [
                {"name": "alice", "full_name": "Alice L", "ssh_key": KEY, "state": "present"},
                {"name": "bob_2"},
                {"name": "c-3", "state": "absent"},
            ]
        )
        == []
    )


def test_every_bad_entry_is_reported_at_once():
    errors = roster.roster_errors(
        [
            {"name": "ok"},
            {"name": "ok"},
            {"name": "9lives"},
            {"name": "x", "e-mail": "x@y"},
            "just-a-string",
            {"name": "root"},
            {"name": "y", "state": "maybe"},
            {"name": "z", "ssh_key": "nope"},
            {"name": "w", "full_name": "W: the, one"},
            {"name": "a" * 33},
        ],
        reserved=["root"],
    )
    joined = "\n".join(errors)
    for fragment in (
        "#2 (ok): duplicate",
        "#3 (9lives)",
        "#4 (x): unknown key(s) e-mail",
        "#5: must be a mapping",
        "#6 (root): name 'root' is reserved",
        "#7 (y): state 'maybe'",
        "#8 (z): ssh_key",
        "#9 (w): full_name",
        "#10 (" + "a" * 33 + ")",
    ):
        assert fragment in joined, fragment
    assert len(errors) == 9


@pytest.mark.parametrize(
    "value,fragment", [([], "is empty"), (None, "is empty"), ({"name": "a"}, "must be a list")]
)
def test_empty_or_malformed_roster(value, fragment):
    assert fragment in roster.roster_errors(value)[0]


def test_empty_roster_allowed_when_asked():
    assert roster.roster_errors([], allow_empty=True) == []


def test_tenant_state():
    state = roster.tenant_state(
        [{"name": "a"}, {"name": "b", "state": "absent"}, {"name": "c"}],
        {"a": "pa", "c": "pc"},
        "pimq-worker",
        "pw",
        ["management"],
        10,
        20,
    )
    assert [v["name"] for v in state["vhosts"]] == ["a", "c"]
    assert state["vhosts"][0]["limits"] == {"max-connections": 10, "max-queues": 20}
    assert state["vhosts_absent"] == state["users_absent"] == ["b"]
    users = {u["name"]: u for u in state["users"]}
    assert users["a"]["permissions"] == [
        {"vhost": "a", "configure": ".*", "write": ".*", "read": ".*"}
    ]
    assert [p["vhost"] for p in users["pimq-worker"]["permissions"]] == ["a", "c"]
    assert {p["read"] for p in users["pimq-worker"]["permissions"]} == {r"^pimq\."}


def test_tenant_state_caps_every_queue_with_admin_policies():
    caps = {
        "queue_bytes": "2048",
        "queue_length": "10",
        "data_bytes": "65536",
        "data_length": "0",
        "priority": "100",
    }
    state = roster.tenant_state(
        [{"name": "a"}, {"name": "b", "state": "absent"}], {"a": "pa"}, "w", "pw", caps=caps
    )
    by_name = {p["name"]: p for p in state["policies"]}
    assert {p["vhost"] for p in state["policies"]} == {"a"}  # none for an absent student
    every, data = by_name["pimq-caps"], by_name["pimq-caps-data"]
    assert every["pattern"] == ".*" and every["apply_to"] == "queues"
    assert every["definition"] == {
        "overflow": "reject-publish",
        "max-length-bytes": 2048,
        "max-length": 10,
    }
    # pimq.tasks and pimq.dead carry whole shards: their own, larger cap wins
    assert re.fullmatch(data["pattern"], "pimq.tasks")
    assert re.fullmatch(data["pattern"], "pimq.dead")
    # so does a routed job's queue (pimq.client.route); an upload's chunks are small
    # enough for the cap every queue has (pimq.client.data)
    assert re.search(data["pattern"], "pimq.job.42e72c24d4cad446")
    assert not re.search(data["pattern"], "pimq.data.9f3a.pi1")
    assert not re.search(data["pattern"], "pimq.result.42e72c24d4cad446")
    assert not re.fullmatch(data["pattern"], "pimq.tasks2")
    assert data["priority"] == every["priority"] + 1 == 101
    assert data["definition"] == {"overflow": "reject-publish", "max-length-bytes": 65536}
    assert roster.tenant_state([{"name": "a"}], {"a": "pa"}, "w", "pw")["policies"] == []


def test_password_terms_end_in_txt():
    assert roster.password_terms(["a"], "/x/creds/", 16) == [
        "/x/creds/a.txt length=16 chars=ascii_letters,digits"
    ]


def test_roster_from_csv():
    text = (
        "# the room's roster\n"
        "name,full_name,ssh_key,state\n"
        f"alice,Alice Liddell,{KEY},\n"
        "\n"
        "bob,,,absent\n"
        'carol,"Danvers, Carol",,present\n'
    )
    entries = roster.roster_from_csv(text)
    assert entries == [
        {"name": "alice", "full_name": "Alice Liddell", "ssh_key": KEY},
        {"name": "bob", "state": "absent"},
        {"name": "carol", "full_name": "Danvers, Carol", "state": "present"},
    ]
    # a comma in full_name is refused (GECOS), reported like any bad entry
    assert roster.roster_errors(entries) == [
        "entry #3 (carol): full_name must be text without ':', ',' or line breaks"
    ]


def test_roster_from_csv_reports_unknown_columns_and_extra_cells():
    entries = roster.roster_from_csv("name,email\nalice,a@x\nbob,b@x,surplus\n")
    errors = "\n".join(roster.roster_errors(entries))
    assert "#1 (alice): unknown key(s) email" in errors
    assert "#2 (bob): unknown key(s) (extra cells), email" in errors
