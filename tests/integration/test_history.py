"""Job history through the real command: pimq run records, pimq history / result read back."""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path

from support.helpers import job_id, run_json


def history(cli, *args: str) -> list[dict]:
    out = cli.run("history", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_job_is_recorded_and_its_result_read_back(cli, start_worker, student, tmp_path):
    start_worker([student.vhost], processes=2)
    corpus = tmp_path / "c.txt"
    corpus.write_text("more less more " * 400)
    doc = run_json(cli, "wordcount", "--word", "more", str(corpus), "--shards", "5")
    (row,) = history(cli)
    assert row["job"] == doc["job"] and row["status"] == "ok" and row["exit_code"] == 0
    assert row["kind"] == "wordcount"
    assert row["args"] == ["--word", "more", str(corpus), "--shards", "5", "--json"]
    assert row["result"] == doc["result"] == 800
    assert row["shards"] == row["done_shards"] == 5 == doc["shards"]
    assert sum(w["shards"] for w in row["workers"].values()) == 5
    assert {w: v["shards"] for w, v in row["workers"].items()} == doc["workers"]
    assert row["wall_seconds"] == doc["wall_seconds"]
    assert row["compute_seconds"] == doc["compute_seconds"]
    assert row["vhost"] == student.vhost

    out = cli.run("result", doc["job"][:6])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "'more' occurs 800 times"  # as pimq run prints it
    assert f"job {doc['job']}: wordcount --word more" in out.stderr
    assert "5 shard(s) in" in out.stderr and "shards per worker:" in out.stderr
    again = json.loads(cli.run("result", "last", "--json").stdout)
    assert again["result"] == 800 and again["job"] == doc["job"]

    db = Path(cli.env["XDG_STATE_HOME"]) / "pimq" / "history.sqlite"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    text = cli.run("history").stdout.splitlines()
    assert text[0].split()[:1] == ["job"] and text[1].split()[0] == doc["job"]
    assert " ok " in text[1]


def test_timeout_and_interrupt_are_recorded(cli, student):
    out = cli.run("run", "noop", "--shards", "3", "--timeout", "1")  # no worker
    assert out.returncode == 4
    timed_out = job_id(out.stderr)
    proc = cli.start("run", "noop", "--shards", "2")  # no worker: it waits
    line = proc.stderr.readline()
    interrupted = job_id(line)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    rows = history(cli)
    assert [(r["job"], r["status"], r["exit_code"]) for r in rows] == [
        (interrupted, "interrupted", 130),
        (timed_out, "timeout", 4),
    ]
    assert rows[1]["shards"] == 3 and rows[1]["done_shards"] == 0
    assert "timed out" in rows[1]["error"]
    out = cli.run("result", timed_out)
    assert out.returncode == 4 and "ended timeout: timed out after 1" in out.stderr
    assert len(history(cli, "--limit", "1")) == 1


def test_a_failed_job_is_recorded(cli, student, start_worker, jobs_dir):
    (jobs_dir / "boom.py").write_text(
        "def split(args, params, shards):\n    return [b'x'] * 2\n"
        "def run(body, params):\n    raise RuntimeError('boom')\n"
        "def join(values, params):\n    return values\n"
    )
    start_worker([student.vhost], processes=1)
    out = cli.run("run", "boom")
    assert out.returncode == 1, out.stderr
    (row,) = history(cli)
    assert row["status"] == "failed" and row["exit_code"] == 1 and row["kind"] == "boom"
    assert "boom" in row["error"]


def test_two_jobs_at_once_both_recorded(cli, student, start_worker):
    start_worker([student.vhost], processes=2)
    procs = [
        cli.start("run", "sleep", *["ab"] * 4, "--per-char", str(0.1 * (i + 1)), "--json")
        for i in range(2)
    ]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        docs.append(json.loads(out))
    rows = {r["job"]: r for r in history(cli)}
    assert set(rows) == {d["job"] for d in docs}
    for d in docs:
        assert rows[d["job"]]["status"] == "ok"
        assert rows[d["job"]]["result"] == d["result"]
        assert rows[d["job"]]["params"] == d["params"]
