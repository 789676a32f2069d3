"""The job history database: rows, statuses, pruning, privacy, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pimq.client import history
from pimq.errors import UsageError
from pimq.protocol.wire import Result


def _results(*workers_secs: tuple[str, float]) -> dict[int, Result]:
    return {
        i: Result("j", i, True, i, seconds, worker)
        for i, (worker, seconds) in enumerate(workers_secs)
    }


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return history.history_path()


def test_path_follows_xdg_state_home(db: Path, tmp_path: Path) -> None:
    assert db == tmp_path / "state" / "pimq" / "history.sqlite"


def test_a_finished_job_reads_back(db: Path) -> None:
    rec = history.Recorder()
    rec.start("00aa", "wordcount", ["--word", "more", "c.txt"], {"word": "more"}, "s01", "h:5672")
    assert history.find("00aa").status == "running"
    rec.finish(
        "00aa",
        0,
        shards=3,
        results=_results(("pi01", 1.0), ("pi02", 2.0), ("pi01", 0.5)),
        wall=1.25,
        result={"more": 7},
        has_result=True,
    )
    d = history.find("00aa").doc()
    assert d["status"] == "ok" and d["exit_code"] == 0
    assert d["args"] == ["--word", "more", "c.txt"] and d["params"] == {"word": "more"}
    assert d["shards"] == d["done_shards"] == 3
    assert d["wall_seconds"] == 1.25 and d["compute_seconds"] == 3.5
    assert d["parallelism"] == 2.8
    assert d["workers"] == {
        "pi01": {"shards": 2, "seconds": 1.5},
        "pi02": {"shards": 1, "seconds": 2.0},
    }
    assert d["result"] == {"more": 7} and d["result_stored"]
    assert d["vhost"] == "s01" and d["broker"] == "h:5672"


@pytest.mark.parametrize(
    ("code", "status"),
    [(1, "failed"), (4, "timeout"), (130, "interrupted"), (3, "unreachable"), (2, "error")],
)
def test_failed_runs_keep_their_status_and_partial_timings(
    db: Path, code: int, status: str
) -> None:
    rec = history.Recorder()
    rec.start("0bad", "grep", ["x"], {}, "s01", "h:1")
    rec.finish("0bad", code, error="why", shards=4, results=_results(("pi01", 1.0)), wall=9.0)
    d = history.find("0bad").doc()
    assert (d["status"], d["exit_code"], d["error"]) == (status, code, "why")
    assert d["shards"] == 4 and d["done_shards"] == 1 and d["result"] is None


def test_a_killed_run_reads_as_killed(db: Path) -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pimq.client.history import Recorder;"
            "Recorder().start('dead', 'noop', [], {}, 'v', 'h:1')",
        ],
        env={**os.environ},
        check=True,
    )
    assert child.returncode == 0
    assert history.find("dead").status == "killed"


def test_newest_first_limit_prefix_and_last(db: Path) -> None:
    rec = history.Recorder()
    for job in ("a1", "a2", "b3"):
        rec.start(job, "noop", [], {}, "v", "h:1")
        rec.finish(job, 0, shards=1, result=None, has_result=True, wall=0.1)
    assert [e.job for e in history.recent()] == ["b3", "a2", "a1"]
    assert [e.job for e in history.recent(2)] == ["b3", "a2"]
    assert history.find("last").job == "b3"
    assert history.find("b").job == "b3"
    with pytest.raises(UsageError, match="ambiguous"):
        history.find("a")
    with pytest.raises(UsageError, match="no job"):
        history.find("ff")
    with pytest.raises(UsageError, match="not a job id"):
        history.find("x'; DROP TABLE jobs")


def test_no_database_yet_is_an_empty_history(db: Path) -> None:
    assert history.recent() == []
    assert not db.exists()


def test_database_is_private(db: Path) -> None:
    old = os.umask(0o000)  # a careless umask must not widen it
    try:
        rec = history.Recorder()
        rec.start("c0", "noop", [], {}, "v", "h:1")
        rec.finish("c0", 0, shards=1, wall=0.1, result=1, has_result=True)
    finally:
        os.umask(old)
    for path in db.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_pruned_to_the_job_bound(db: Path) -> None:
    rec = history.Recorder()
    for i in range(12):
        job = f"{i:04x}"
        rec.start(job, "noop", [], {}, "v", "h:1")
        rec.finish(job, 0, shards=1, wall=0.1, result=i, has_result=True, max_jobs=5)
    assert [e.job for e in history.recent(None)] == [f"{i:04x}" for i in range(11, 6, -1)]


def test_pruned_to_the_byte_bound_and_big_results_dropped(db: Path) -> None:
    rec = history.Recorder()
    big = "x" * 1000
    for i in range(6):
        job = f"{i:04x}"
        rec.start(job, "grep", [], {}, "v", "h:1")
        rec.finish(job, 0, shards=1, wall=0.1, result=big, has_result=True, max_bytes=3500)
    kept = history.recent(None)
    assert [e.job for e in kept] == ["0005", "0004", "0003"]
    rec.start("00ff", "grep", [], {}, "v", "h:1")
    rec.finish("00ff", 0, shards=1, wall=0.1, result=big, has_result=True, max_result_bytes=100)
    d = history.find("00ff").doc()
    assert d["status"] == "ok" and not d["result_stored"] and d["result"] is None


def test_pruning_bounds_the_file(db: Path) -> None:
    rec = history.Recorder()
    for i in range(40):
        job = f"{i:04x}"
        rec.start(job, "grep", [], {}, "v", "h:1")
        rec.finish(
            job, 0, shards=1, wall=0.1, result="y" * 50_000, has_result=True, max_bytes=200_000
        )
    with history.opened() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert db.stat().st_size < 600_000  # 40 x 50 kB written, about 200 kB kept


def test_an_unwritable_history_never_fails_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # a file where a directory should be
    rec = history.Recorder()
    rec.start("d0", "noop", [], {}, "v", "h:1")
    rec.finish("d0", 0, shards=1, wall=0.1)
    err = capsys.readouterr().err
    assert err.count("job history not written") == 1


def _writer(state: str, prefix: str, n: int) -> None:
    os.environ["XDG_STATE_HOME"] = state
    rec = history.Recorder()
    for i in range(n):
        job = f"{prefix}{i:04x}"
        rec.start(job, "noop", [str(i)], {}, "v", "h:1")
        rec.finish(job, 0, shards=1, wall=0.01, result=i, has_result=True, max_jobs=10_000)
    if rec.warned:
        raise SystemExit(1)


def test_concurrent_writers_lose_nothing(db: Path, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path / "state"), p, 60)) for p in ("a", "b", "c")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
        assert p.exitcode == 0
    entries = history.recent(None)
    assert len(entries) == 180
    assert all(e.status == "ok" for e in entries)
    assert sorted(json.loads(e.row["result"]) for e in entries if e.job[0] == "b") == list(
        range(60)
    )
