"""Load: 8 students x 3 jobs at once, all exact; each job's time against its time alone.

Every job is its own SSH login, all 24 at once, as a class starting together
would (the head's sshd MaxStartups is raised by the pimq_head role for that;
Debian's default turns some of them away).

A job alone has the fleet to itself; 24 at once share it, so a ratio near 24 is
fair sharing, not overhead. The batch figure tells the two apart: the wall time
of all 24 against the sum of their times alone (one after the other).
"""

from __future__ import annotations

import statistics
import time

import figures
import pytest
from support import jobs, nodes

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

PER_STUDENT = 3
SHARDS = 16
NOTE = """A job alone has the three Pis to itself; 24 at once share them, so a ratio
near 24 (the worst job waits behind the other 23) is fair sharing, not overhead.
The batch time covers the 24 SSH logins and 24 `pimq run` start-ups on the head
(about 0.3 CPU s each, all on the same 2 shared cores as the Pis), against
the sum of the jobs' own times alone, which counts neither."""


def test_8_students_3_jobs_each_at_once(room: nodes.Room, converged, corpus) -> None:
    path, expected = corpus
    for node in room.workers:
        jobs.wait_worker_active(node)
    alone: dict[str, float] = {}
    for name in jobs.STUDENTS:
        job = jobs.wordcount(room, name, path, "more", SHARDS).wait()
        assert job.rc == 0, job.err
        assert job.doc["result"] == expected
        alone[name] = job.doc["wall_seconds"]
    began = time.monotonic()
    started = [
        jobs.wordcount(room, name, path, "more", SHARDS)
        for _ in range(PER_STUDENT)
        for name in jobs.STUDENTS
    ]
    finished = [job.wait(timeout=1200) for job in started]
    batch = time.monotonic() - began
    one_by_one = PER_STUDENT * sum(alone.values())
    exact = [j for j in finished if j.doc and j.doc["result"] == expected]
    ratios = [j.doc["wall_seconds"] / alone[j.student] for j in exact]
    section = (
        f"Load: {len(jobs.STUDENTS)} students x {PER_STUDENT} jobs at once "
        f"({SHARDS}-shard word count, each job its own SSH login)"
    )
    figures.note(section, NOTE)
    figures.add(
        section,
        f"{len(finished)} jobs",
        **{
            "jobs exact": len(exact),
            "median alone s": round(statistics.median(alone.values()), 1),
            "median under load s": round(statistics.median(j.doc["wall_seconds"] for j in exact), 1)
            if exact
            else "-",
            "median ratio": round(statistics.median(ratios), 1) if ratios else "-",
            "worst ratio (load / alone)": round(max(ratios), 1) if ratios else "-",
            "batch s (SSH included)": round(batch, 1),
            "sum of times alone s": round(one_by_one, 1),
            "shards lost": sum(j.shards_lost for j in finished),
            "shards counted twice": sum(j.shards_twice for j in finished),
            "duplicate results dropped": sum(j.duplicates for j in finished),
        },
    )
    failed = [
        f"{j.student}: rc={j.rc} result={j.doc['result'] if j.doc else None} {j.err[-400:]}"
        for j in finished
        if j not in exact
    ]
    assert not failed, "\n".join(failed)
    assert len(exact) == len(jobs.STUDENTS) * PER_STUDENT
