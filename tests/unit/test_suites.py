"""tests/harness/suites.py: lanes joined by + run at the same time, a lane's suites
(joined by ,) one after the other, each into its own log, and the table tells each
one's time and the run's wall clock."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SUITES = Path(__file__).resolve().parents[2] / "tests" / "harness" / "suites.py"


@pytest.fixture
def suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("suites_under_test", SUITES)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ARTIFACTS", tmp_path / "artifacts")
    return module


@pytest.fixture
def make(tmp_path: Path) -> Path:
    """A stand-in for make: target `slow-N` sleeps N/10 s, `bad` fails; each writes
    when it started and ended into marks/."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "make"
    script.write_text(
        "#!/bin/sh\n"
        't=$2; date +%s.%N > "' + str(marks) + '/$t.start"\n'
        'echo "output of $t"\n'
        'case $t in slow-*) sleep "0.${t#slow-}";; bad) exit 3;; esac\n'
        'date +%s.%N > "' + str(marks) + '/$t.end"\n'
    )
    script.chmod(0o755)
    return script


def test_a_group_runs_at_once_and_each_log_is_kept(suites, make: Path, tmp_path: Path, capsys):
    group = [suites.Suite("slow-5"), suites.Suite("slow-6"), suites.Suite("bad")]
    suites.run_group(str(make), [[s] for s in group], env={"PATH": "/usr/bin:/bin"})
    marks = tmp_path / "marks"
    started = [float((marks / f"{t}.start").read_text()) for t in ("slow-5", "slow-6")]
    ended = [float((marks / f"{t}.end").read_text()) for t in ("slow-5", "slow-6")]
    assert max(started) < min(ended)  # the second began before the first ended
    assert [s.rc for s in group] == [0, 0, 3]
    assert [s.result for s in group] == ["ok", "ok", "FAILED (3)"]
    for s in group:
        assert (tmp_path / "artifacts" / f"{s.target}.log").read_text() == f"output of {s.target}\n"
    out = capsys.readouterr().out
    # every log printed whole, in the order the group names them
    assert (
        out.index("output of slow-5") < out.index("output of slow-6") < out.index("output of bad")
    )


def test_the_table_shows_the_wall_clock_and_which_suites_ran_together(suites):
    a, b, c = (
        suites.Suite("lint", 30.0, 0),
        suites.Suite("integration", 400.0, 0),
        suites.Suite("converge", 300.0, 1),
    )
    text = suites.table([[[a]], [[b], [c]]], "run-1", wall=431.0)
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split()[:4] == ["total", "(wall", "clock)", "431"]
    assert "FAILED" in total
    assert "at the same time: integration + converge" in text
    assert "failed: converge" in text


def test_a_lane_runs_its_suites_in_turn_beside_the_other_lanes(suites, make: Path, tmp_path: Path):
    first, then, beside = suites.Suite("slow-3"), suites.Suite("bad"), suites.Suite("slow-9")
    after = suites.Suite("slow-2")
    suites.run_group(str(make), [[first, then, after], [beside]], env={"PATH": "/usr/bin:/bin"})
    marks = tmp_path / "marks"

    def at(target: str, mark: str) -> float:
        return float((marks / f"{target}.{mark}").read_text())

    # in turn: each starts once the one before it has ended, a failure included
    assert at("slow-3", "end") <= at("bad", "start")
    assert at("bad", "start") <= at("slow-2", "start")
    # beside: the other lane's suite began with the first lane's first one
    assert at("slow-9", "start") < at("slow-3", "end")
    assert [s.result for s in (first, then, after, beside)] == ["ok", "FAILED (3)", "ok", "ok"]


def test_the_targets_make_groups_of_lanes(suites, make: Path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(suites, "run_group", lambda _make, group, _env: seen.append(
        [[s.target for s in lane] for lane in group]
    ))  # fmt: skip
    suites.main(["--make", str(make), "a,b+c", "d"])
    assert seen == [[["a", "b"], ["c"]], [["d"]]]
    assert "at the same time: a, b + c" in capsys.readouterr().out
