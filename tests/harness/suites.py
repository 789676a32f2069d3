#!/usr/bin/env python3
"""Run suites (make targets) one after the other; print how long each took.

    suites.py [--make MAKE] GROUP...        make test / make test-all call it
    GROUP: LANE[+LANE...]   LANE: TARGET[,TARGET...]

Each suite is ``make TARGET``, exactly what a person types for the inner loop,
its output streamed as it comes. The groups run one after the other. In a
group, lanes joined by ``+`` run at the same time and each lane runs its
targets one after the other, the next as soon as the one before has ended
(``converge,test-classroom+molecule``: Molecule beside the converge and then
beside the classroom suite, which waits for the converge alone). Then each
suite's output goes to ``artifacts/<target>.log``, a line says when one ends
or starts and every minute which are still running, and each log is printed
whole, in the order given, once the group is done; the next group starts when
all of its lanes have ended. Every suite runs even after
one has failed, so the table at the end shows the whole state; the exit status is non-zero if any
failed (130 if interrupted: the table is printed all the same).

The table: suite, seconds, result, and pytest's counts (passed, failed = failed
+ errors, skipped), which every pytest session reports through
``support.report`` (``PIMQ_SUITE_REPORT``); a target that runs pytest twice
(integration: the newest pika, then Debian's) shows a row per session under its
own. Targets without pytest (lint, molecule) show their time and result only.
A suite in which any test skipped has failed: ``make test`` checks everything
it lists, and a test whose prerequisite is missing fails rather than skips.

Every pytest session lists its 25 slowest tests (``--durations=25``), so the
log shows where the time budget goes. All suites of one call share
``PIMQ_RUN``, so the simulated room is provisioned once for all of them
(``tests/support/provision.py``). The table is also written to
``artifacts/suites.txt``; ``artifacts/`` (journals of failed classroom tests) is
emptied first, so what it holds belongs to this run.

Stdlib only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
COUNTS = f"{'passed':>6} {'failed':>6} {'skipped':>7}"


@dataclass
class Session:
    """One pytest session's counts (a line of ``support.report``)."""

    label: str
    seconds: float
    passed: int
    failed: int
    skipped: int

    @classmethod
    def parse(cls, doc: dict) -> Session:
        venv = Path(doc["python"]).parent.parent.name
        return cls(
            label=f"pytest ({venv})",
            seconds=doc["seconds"],
            passed=doc["passed"] + doc["xfailed"],
            failed=doc["failed"] + doc["error"] + doc["xpassed"],
            skipped=doc["skipped"],
        )


@dataclass
class Suite:
    target: str
    seconds: float = 0.0
    rc: int | None = None  # None: not run (interrupted before)
    sessions: list[Session] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.sessions)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.skipped == 0

    @property
    def result(self) -> str:
        if self.rc is None:
            return "not run"
        if self.rc == 0 and self.skipped:
            return "FAILED (skips)"
        return "ok" if self.rc == 0 else f"FAILED ({self.rc})"


def run_group(make: str, group: list[list[Suite]], env: dict[str, str]) -> None:
    """The lanes of one group at once, each lane's suites one after the other, each
    suite into its own log; then every log in order."""
    if len(group) == 1 and len(group[0]) == 1:
        run_suite(make, group[0][0], env)
        return
    suites = [s for lane in group for s in lane]
    names = " + ".join(", ".join(s.target for s in lane) for lane in group)
    print(f"\n\033[1m=== suites {names}: at once (logs: artifacts/<suite>.log)\033[0m", flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    with contextlib.ExitStack() as files:
        reports = {
            s.target: files.enter_context(
                tempfile.NamedTemporaryFile("r", suffix=".jsonl", prefix="pimq-suite-")
            )
            for s in suites
        }
        waiting = [list(lane) for lane in group]
        running: dict[int, tuple[Suite, subprocess.Popen, float]] = {}

        def start(lane: int) -> None:
            suite = waiting[lane].pop(0)
            log = files.enter_context((ARTIFACTS / f"{suite.target}.log").open("w"))
            proc = subprocess.Popen(
                [make, "--no-print-directory", suite.target],
                cwd=REPO,
                env={**env, "PIMQ_SUITE_REPORT": reports[suite.target].name},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            running[lane] = (suite, proc, time.monotonic())

        for lane in range(len(group)):
            start(lane)
        begun = last = time.monotonic()
        try:
            while running:
                time.sleep(1)
                for lane, (suite, proc, began) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    suite.rc, suite.seconds = proc.returncode, time.monotonic() - began
                    del running[lane]
                    then = f"at {time.monotonic() - begun:.0f} s"
                    print(f"  {suite.target}: {suite.result} in {suite.seconds:.0f} s, {then}")
                    if waiting[lane]:
                        start(lane)
                        print(f"  {running[lane][0].target}: started {then}")
                sys.stdout.flush()
                if running and time.monotonic() - last >= 60:
                    last = time.monotonic()
                    now = ", ".join(s.target for s, _, _ in running.values())
                    print(f"  still running after {last - begun:.0f} s: {now}", flush=True)
        except KeyboardInterrupt:
            for suite, proc, began in running.values():
                proc.terminate()
                proc.wait()
                suite.rc, suite.seconds = 130, time.monotonic() - began
            raise
        finally:
            for suite in suites:
                report = reports[suite.target]
                suite.sessions = [Session.parse(json.loads(x)) for x in report if x.strip()]
    for suite in suites:
        print(f"\n\033[1m=== suite {suite.target} ({make} {suite.target}): its log\033[0m")
        print((ARTIFACTS / f"{suite.target}.log").read_text(), end="", flush=True)


def run_suite(make: str, suite: Suite, env: dict[str, str]) -> None:
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", prefix="pimq-suite-") as report:
        print(f"\n\033[1m=== suite {suite.target}: {make} {suite.target}\033[0m", flush=True)
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [make, "--no-print-directory", suite.target],
                cwd=REPO,
                env={**env, "PIMQ_SUITE_REPORT": report.name},
                check=False,
            )
            suite.rc = proc.returncode
        except KeyboardInterrupt:
            suite.rc = 130
            raise
        finally:
            suite.seconds = time.monotonic() - start
            suite.sessions = [Session.parse(json.loads(line)) for line in report if line.strip()]


def table(groups: list[list[list[Suite]]], run_id: str, wall: float) -> str:
    suites = [s for g in groups for lane in g for s in lane]
    head = f"{'suite':<24} {'seconds':>8}  {'result':<15} " + COUNTS
    lines = [f"suite times (PIMQ_RUN={run_id})", head, "-" * len(head)]

    def counts(sessions: list[Session]) -> str:
        if not sessions:
            return f"{'-':>6} {'-':>6} {'-':>7}"
        p, f, s = (sum(getattr(x, k) for x in sessions) for k in ("passed", "failed", "skipped"))
        return f"{p:>6} {f:>6} {s:>7}"

    for s in suites:
        seconds = f"{s.seconds:8.0f}" if s.rc is not None else f"{'-':>8}"
        lines.append(f"{s.target:<24} {seconds}  {s.result:<15} {counts(s.sessions)}")
        if len(s.sessions) > 1:
            for x in s.sessions:
                lines.append(f"  {x.label:<22} {x.seconds:8.0f}  {'':<15} {counts([x])}")
    ran = [s for s in suites if s.rc is not None]
    failed = [s.target for s in suites if not s.ok]
    every = [x for s in ran for x in s.sessions]
    lines.append("-" * len(head))
    total = "FAILED" if failed else "ok"
    lines.append(f"{'total (wall clock)':<24} {wall:8.0f}  {total:<15} {counts(every)}")
    if any(len(g) > 1 for g in groups):
        lanes = [" + ".join(", ".join(s.target for s in lane) for lane in g) for g in groups]
        joined = "; ".join(text for g, text in zip(groups, lanes, strict=True) if len(g) > 1)
        lines.append(f"at the same time: {joined} (each row is its own wall time)")
    if failed:
        lines.append(f"failed: {', '.join(failed)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("targets", nargs="+", help="make targets, in order")
    p.add_argument("--make", default=os.environ.get("MAKE", "make"), help="the make to call")
    args = p.parse_args(argv)
    run_id = os.environ.get("PIMQ_RUN") or f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    # Every pytest session also lists its ten slowest tests: where the budget goes.
    addopts = f"{os.environ.get('PYTEST_ADDOPTS', '')} --durations=25".strip()
    env = {**os.environ, "PIMQ_RUN": run_id, "PYTEST_ADDOPTS": addopts}
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    groups = [
        [[Suite(t) for t in lane.split(",") if t] for lane in arg.split("+") if lane]
        for arg in args.targets
    ]
    suites = [s for g in groups for lane in g for s in lane]
    status = 0
    start = time.monotonic()
    try:
        for group in groups:
            run_group(args.make, group, env)
    except KeyboardInterrupt:
        status = 130
    text = table(groups, run_id, time.monotonic() - start)
    print("\n" + text, flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "suites.txt").write_text(text + "\n")
    if status == 0 and not all(s.ok for s in suites):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
