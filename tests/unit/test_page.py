"""The teacher's page and record, pure logic: the record's encoding and
checks, the record store's trimming, the figures computed from Prometheus
answers, the logins (the role's hashes checked by the page), the teacher
vhost's broker state. The page itself runs on the classroom
(tests/classroom/test_page.py)."""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.plugins import filter_plugin

from pimq.client import record
from pimq.page import figures
from pimq.page.logins import check_login
from pimq.page.records import RecordConsumer, RecordStore

page_filters = filter_plugin("pimq_page", "pimq_page")
roster = filter_plugin("pimq", "pimq_roster")


def a_record(**over) -> dict:
    doc = record.make_record("j1", "alice", "wordcount", ["pi2", "pi1", "pi1"], 8, 1.23456, "done")
    doc.update(over)
    return doc


# --- the record ------------------------------------------------------------------


def test_record_has_exactly_the_fields_the_page_shows() -> None:
    doc = a_record()
    assert list(doc) == list(record.FIELDS)
    assert doc["pis"] == ["pi1", "pi2"]  # sorted, once each
    assert doc["wall_seconds"] == 1.235
    assert doc["speedup"] is None
    assert abs(doc["finished"] - time.time()) < 5
    body = record.encode(doc)
    assert json.loads(body) == doc
    assert b"params" not in body and b"result" not in body
    with pytest.raises(ValueError):
        record.make_record("j", "a", "k", [], 1, 1.0, "exploded")


def test_outcome_of_exit_codes() -> None:
    assert record.outcome_of(0) == "done"
    assert record.outcome_of(130) == "stopped"  # Ctrl-C
    assert record.outcome_of(5) == "stopped"  # make stop-job
    for code in (1, 2, 3, 4):
        assert record.outcome_of(code) == "failed"


def test_decode_round_trip_and_student_is_the_user_id() -> None:
    doc = a_record(speedup=2.5)
    assert record.decode(record.encode(doc), "alice") == doc


@pytest.mark.parametrize(
    ("change", "user_id", "why"),
    [
        ({}, None, "no user_id"),
        ({}, "bob", "sent by 'bob'"),  # alice's name in bob's message: forged
        ({"outcome": "won"}, "alice", "outcome"),
        ({"shards": -1}, "alice", "shards"),
        ({"shards": True}, "alice", "shards"),
        ({"wall_seconds": "fast"}, "alice", "wall_seconds"),
        ({"wall_seconds": math.inf}, "alice", "wall_seconds"),
        ({"speedup": -2}, "alice", "speedup"),
        ({"pis": "pi1"}, "alice", "pis"),
        ({"pis": ["x" * 65]}, "alice", "pi"),
        ({"kind": ""}, "alice", "kind"),
        ({"job": "a\x1b[2Jb"}, "alice", "printable"),
    ],
)
def test_decode_refuses(change: dict, user_id: str | None, why: str) -> None:
    doc = a_record()
    doc.update(change)
    body = json.dumps(doc, allow_nan=True).encode()
    with pytest.raises(record.BadRecord, match=why):
        record.decode(body, user_id)


def test_decode_refuses_junk_and_big_bodies() -> None:
    for body in (b"not json", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(record.BadRecord):
            record.decode(body, "alice")
    big = dict(a_record(), kind="k" * 10, pad="x" * record.MAX_BODY)
    with pytest.raises(record.BadRecord, match="larger"):
        record.decode(json.dumps(big).encode(), "alice")


def test_load_target(tmp_path: Path) -> None:
    path = tmp_path / "record.yaml"
    assert record.load_target(path) is None  # no file: no record is sent
    path.write_text("host: head\nport: 5671\nvhost: pimq-teacher\nexchange: pimq.record\n")
    assert record.load_target(path) == record.Target("head", 5671, "pimq-teacher", "pimq.record")
    for bad in ("host: head\n", "host: head\nport: 0\n", "- a\n", "host: [x]\nport: 1\n", ":\n"):
        path.write_text(bad)
        assert record.load_target(path) is None, bad


def test_publish_gives_up_within_the_deadline() -> None:
    """A broker that accepts the TCP connection and never answers (the worst
    case: not refused at once) delays the job's end by the deadline, no more."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        cfg = SimpleNamespace(user="alice", password="pw", ca=None)
        target = record.Target("127.0.0.1", server.getsockname()[1])
        start = time.monotonic()
        assert record.publish(cfg, a_record(), target, deadline=0.5) is False
        assert time.monotonic() - start < 0.9
    finally:
        server.close()


def test_job_ended_never_raises_without_a_target(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIMQ_RECORD_CONFIG", str(tmp_path / "absent.yaml"))
    cfg = SimpleNamespace(user="alice", password="pw", ca=None)
    start = time.monotonic()
    assert record.job_ended(cfg, "j", "./mine.py", ["pi1"], 3, 1.0, 1) is False
    assert time.monotonic() - start < 0.2


# --- the record store -------------------------------------------------------------


def test_store_keeps_the_newest_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "records.json"
    store = RecordStore(path, keep=3)
    for i in range(5):
        assert store.add(a_record(job=f"j{i}", finished=1000.0 + i))
    assert [r["job"] for r in store.newest()] == ["j4", "j3", "j2"]
    assert [r["job"] for r in store.newest(2)] == ["j4", "j3"]
    # the same record again: kept once; the same job with news: replaced
    assert not store.add(a_record(job="j4", finished=1004.0))
    assert store.add(a_record(job="j4", finished=1004.0, outcome="failed"))
    again = RecordStore(path, keep=3)
    assert [(r["job"], r["outcome"]) for r in again.newest()] == [
        ("j4", "failed"),
        ("j3", "done"),
        ("j2", "done"),
    ]
    # another student's job of the same id is another record
    again.add(a_record(job="j4", student="bob", finished=1005.0))
    assert [(r["student"], r["job"]) for r in again.newest(2)] == [("bob", "j4"), ("alice", "j4")]
    assert not list(path.parent.glob(".records.*"))  # no temporary file left


def test_store_trims_a_longer_file_and_ignores_a_broken_one(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    path.write_text(json.dumps([a_record(job=f"j{i}", finished=float(i)) for i in range(10)]))
    assert [r["job"] for r in RecordStore(path, keep=4).newest()] == ["j9", "j8", "j7", "j6"]
    path.write_text("{half")
    assert RecordStore(path, keep=4).newest() == []


def test_consumer_stores_records_and_drops_junk(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "r.json", keep=10)
    consumer = RecordConsumer(store, connect=lambda: None, exchange="pimq.record")
    assert consumer.queue == "pimq.record"
    assert consumer.handle(record.encode(a_record()), "alice")
    assert not consumer.handle(record.encode(a_record(job="j2")), "mallory")
    assert not consumer.handle(b"{}", "alice")
    assert [r["job"] for r in store.newest()] == ["j1"]


# --- the figures from Prometheus' answers --------------------------------------------


def vec(label: str, values: dict[str, float | str], **extra: str) -> list[dict]:
    return [
        {"metric": {label: k, **extra}, "value": [1700000000.0, str(v)]} for k, v in values.items()
    ]


def test_pi_rows_from_answers() -> None:
    answers = {
        "up": vec("pi", {"head": 1, "pi1": 1, "pi2": 0, "pi9": 1}),
        "load": vec("pi", {"head": 0.5, "pi1": 1.25, "pi2": 3.0}),
        "temperature": vec("pi", {"pi1": 51.5}),
        "throttled": vec("pi", {"pi1": 0, "head": 5}),
        "shards_per_s": vec("pi", {"pi1": 2.0, "pi2": 7.0}),
        "busy": vec("pi", {"pi1": 1, "pi2": 2}),
        "processes": vec("pi", {"pi1": 2, "pi2": 2}),
    }
    rows = {r["pi"]: r for r in figures.pi_rows(["head", "pi1", "pi2", "pi3"], answers)}
    assert list(rows) == ["head", "pi1", "pi2", "pi3", "pi9"]  # inventory order, then others
    assert rows["pi1"] == {
        "pi": "pi1",
        "up": True,
        "load": 1.25,
        "temperature": 51.5,
        "throttled": 0.0,
        "shards_per_s": 2.0,
        "busy": 1.0,
        "processes": 2.0,
    }
    # a down Pi: its last figures are stale, not shown
    assert rows["pi2"]["up"] is False
    assert rows["pi2"]["load"] is None and rows["pi2"]["shards_per_s"] is None
    # a Pi Prometheus does not know while it answers for others: down
    assert rows["pi3"]["up"] is False
    assert rows["head"]["temperature"] is None  # no sensor (a container)
    assert rows["head"]["throttled"] == 5.0


def test_pi_rows_without_prometheus_are_no_data() -> None:
    rows = figures.pi_rows(["head", "pi1"], {})
    assert [r["pi"] for r in rows] == ["head", "pi1"]
    assert all(r[k] is None for r in rows for k in figures.PI_QUERIES)


def test_odd_samples_are_skipped() -> None:
    answer = [
        {"metric": {"pi": "pi1"}, "value": [1, "NaN"]},
        {"metric": {"pi": "pi2"}, "value": [1, "x"]},
        {"metric": {}, "value": [1, "1"]},
        "junk",
        {"metric": {"pi": "pi3"}, "value": [1, "2"]},
        {"metric": {"pi": "pi3"}, "value": [1, "3"]},
    ]
    assert figures.by_label(answer, "pi") == {"pi3": 5.0}
    assert figures.by_label(None, "pi") is None


def test_student_rows_active_only_with_share_of_the_fleet() -> None:
    answers = {
        "jobs": vec("vhost", {"alice": 1, "bob": 2}),
        "queued": vec("vhost", {"alice": 40, "carol": 0}),
        "seconds": vec("student", {"alice": 3.0, "bob": 1.0, "carol": 0.0, "dave": 0.5}),
        "capacity": [{"metric": {}, "value": [1, "4"]}],
    }
    rows = figures.student_rows(answers)
    assert rows == [
        {"student": "alice", "jobs": 1, "queued": 40, "share": 0.75},
        {"student": "bob", "jobs": 2, "queued": 0, "share": 0.25},
        {"student": "dave", "jobs": 0, "queued": 0, "share": 0.125},
    ]  # carol: nothing running, nothing queued: not active
    assert figures.student_rows({}) is None
    no_rate = figures.student_rows({"jobs": vec("vhost", {"alice": 1})})
    assert no_rate == [{"student": "alice", "jobs": 1, "queued": 0, "share": None}]


def test_student_queries_read_the_head_broker() -> None:
    q = figures.student_queries("head")
    assert 'pi="head"' in q["jobs"] and "pimq\\\\.result\\\\." in q["jobs"]
    assert "pimq\\\\.tasks|pimq\\\\.job\\\\." in q["queued"]


def test_series_and_plot() -> None:
    now = 10_000.0
    matrix = [{"metric": {}, "values": [[now - 3600, "0"], [now - 1800, "0.5"], [now, "NaN"]]}]
    points = figures.series(matrix)
    assert points == [(now - 3600, 0.0), (now - 1800, 0.5)]
    svg = figures.svg_plot(points, now)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<polyline" in svg and "no data" not in svg
    assert "-60 min" in svg and "now" in svg
    assert "no data" in figures.svg_plot(None, now)
    assert "<polyline" not in figures.svg_plot([], now)
    assert figures.series(None) is None and figures.series([]) == []


def test_job_rows_newest_first() -> None:
    rows = figures.job_rows([a_record(job="old", finished=100.0), a_record(finished=160.0)], 200.0)
    assert [(r["job"], r["ago"]) for r in rows] == [("j1", 40.0), ("old", 100.0)]
    assert [figures.ago(s) for s in (5, 75, 7300, 90000)] == ["5 s", "1 min", "2 h", "1 d"]


# --- logins and the broker's teacher vhost -----------------------------------------


def test_role_login_hashes_are_stable_and_checked_by_the_page() -> None:
    users = {"pimq-admin": "s3cret", "teach": "other"}
    first = page_filters.page_logins(users, rounds=1000)
    assert first == page_filters.page_logins(users, rounds=1000)  # second run: no change
    logins = json.loads(first)
    assert "s3cret" not in first
    assert check_login(logins, "pimq-admin", "s3cret")
    assert check_login(logins, "teach", "other")
    assert not check_login(logins, "teach", "s3cret")
    assert not check_login(logins, "alice", "s3cret")
    assert not check_login(logins, "pimq-admin", "")
    assert not check_login({}, "", "")
    changed = json.loads(page_filters.page_logins({"teach": "new"}, rounds=1000))
    assert changed["teach"]["salt"] != logins["teach"]["salt"]


def test_page_sans() -> None:
    assert page_filters.page_sans("head", {"ansible_host": "10.0.0.1"}) == [
        "DNS:head",
        "IP:10.0.0.1",
    ]


def test_teacher_vhost_students_may_only_publish_there() -> None:
    teacher = {
        "vhost": "pimq-teacher",
        "exchange": "pimq.record",
        "page_user": "pimq-page",
        "page_password": "pp",
    }
    students = [{"name": "alice"}, {"name": "bob"}, {"name": "gone", "state": "absent"}]
    state = roster.tenant_state(
        students, {"alice": "a", "bob": "b"}, "pimq-worker", "w", teacher=teacher
    )
    by_name = {u["name"]: u for u in state["users"]}
    record_perm = {
        "vhost": "pimq-teacher",
        "configure": "^$",
        "write": r"^pimq\.record$",
        "read": "^$",
    }
    for name in ("alice", "bob"):
        assert record_perm in by_name[name]["permissions"]
        assert len(by_name[name]["permissions"]) == 2
    # the worker has nothing there; the page only the record
    assert all(p["vhost"] != "pimq-teacher" for p in by_name["pimq-worker"]["permissions"])
    assert by_name["pimq-page"]["permissions"] == [
        {
            "vhost": "pimq-teacher",
            "configure": r"^pimq\.record$",
            "write": r"^pimq\.record$",
            "read": r"^pimq\.record$",
        }
    ]
    assert by_name["pimq-page"]["tags"] == []
    # the default connection limit, the same whatever the roster's size (a roster
    # change leaves the record's vhost as it is)
    assert {"name": "pimq-teacher", "limits": {"max-connections": 256, "max-queues": 4}} in state[
        "vhosts"
    ]
    fewer = roster.tenant_state(students[:1], {"alice": "a"}, "pimq-worker", "w", teacher=teacher)
    assert [v for v in fewer["vhosts"] if v["name"] == "pimq-teacher"] == [
        v for v in state["vhosts"] if v["name"] == "pimq-teacher"
    ]
    (cap,) = [p for p in state["policies"] if p["vhost"] == "pimq-teacher"]
    assert cap["definition"]["overflow"] == "drop-head"
    assert cap["pattern"] == r"^pimq\.record$"
    # without the teacher (another broker): as before
    plain = roster.tenant_state(students, {"alice": "a", "bob": "b"}, "pimq-worker", "w")
    assert "pimq-page" not in {u["name"] for u in plain["users"]}
    assert all(len(u["permissions"]) == 1 for u in plain["users"][:-1])
