"""Load: 8 students x 3 jobs at once, all exact; each job's time against its time alone.

A job alone has the fleet to itself; 24 at once share it, so a ratio near 24 is
fair sharing, not overhead. The batch figure tells the two apart: the wall time
of all 24 against the sum of their times alone (one after the other).

Each student logs in once and starts their 3 jobs in the background of that session:
24 simultaneous SSH logins to the head trip sshd's MaxStartups (10 unauthenticated
connections; beyond that sshd resets some at random), which is not what is under test.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time

import figures
import jobs
import nodes
import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

PER_STUDENT = 3
SHARDS = 16
BATCH = (
    "for i in $(seq {n}); do pimq run wordcount --word {word} {path} --shards {shards} --json "
    "> .chaos-load-$i.json 2> .chaos-load-$i.err & done; wait; "
    "for i in $(seq {n}); do echo; cat .chaos-load-$i.json; echo; cat .chaos-load-$i.err; done"
)


def test_8_students_3_jobs_each_at_once(converged: nodes.Room, corpus) -> None:
    room = converged
    path, expected = corpus
    for node in room.workers:
        jobs.wait_worker_active(node)
    alone: dict[str, float] = {}
    for name in jobs.STUDENTS:
        job = jobs.wordcount(room, name, path, "more", SHARDS).wait()
        assert job.rc == 0, job.err
        assert job.doc["result"] == expected
        alone[name] = job.doc["wall_seconds"]
    command = BATCH.format(n=PER_STUDENT, word="more", path=path, shards=SHARDS)
    ssh = ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS]
    began = time.monotonic()
    sessions = {
        name: subprocess.Popen(
            [*ssh, f"{name}@{room.ips[room.head]}", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in jobs.STUDENTS
    }
    running: list[tuple[str, dict | None]] = []
    failed: list[str] = []
    for name, proc in sessions.items():
        out, _ = proc.communicate(timeout=1200)
        docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        running += [(name, d) for d in docs]
        if len(docs) != PER_STUDENT:
            running += [(name, None)] * (PER_STUDENT - len(docs))
            failed.append(f"{name}: {len(docs)} of {PER_STUDENT} jobs gave JSON:\n{out[-600:]}")
    batch = time.monotonic() - began
    one_by_one = PER_STUDENT * sum(alone.values())
    exact = [(n, d) for n, d in running if d and d["result"] == expected]
    ratios = [d["wall_seconds"] / alone[n] for n, d in exact]
    figures.add(
        f"Load: {len(jobs.STUDENTS)} students x {PER_STUDENT} jobs at once "
        f"({SHARDS}-shard word count)",
        f"{len(running)} jobs",
        **{
            "jobs exact": len(exact),
            "median alone s": round(statistics.median(alone.values()), 1),
            "median under load s": round(statistics.median(d["wall_seconds"] for _, d in exact), 1)
            if exact
            else "-",
            "median ratio": round(statistics.median(ratios), 1) if ratios else "-",
            "worst ratio (load / alone)": round(max(ratios), 1) if ratios else "-",
            "batch s (SSH included)": round(batch, 1),
            "sum of times alone s": round(one_by_one, 1),
            "shards lost": sum(d["shards"] - sum(d["workers"].values()) for _, d in running if d),
            "shards counted twice": sum(
                max(0, sum(d["workers"].values()) - d["shards"]) for _, d in running if d
            ),
            "duplicate results dropped": sum(d.get("duplicates", 0) for _, d in running if d),
        },
    )
    failed += [
        f"{n}: result {d['result']} != {expected}" for n, d in running if d and (n, d) not in exact
    ]
    assert not failed, "\n".join(failed)
    assert len(exact) == len(jobs.STUDENTS) * PER_STUDENT
