"""The word count over the 45 MB corpus on the simulated classroom, unshaped
and with every link at 100 Mbit/s (tests/harness/link.py): the first run
(bytes shipped), ``pimq data put`` (once), the cached run (ranges only), and
the same job in one process on the head (``--local``). ``make classroom
provision`` first, PIMQ_CLASSROOM set.

    PYTHONPATH=tests .venv/bin/python bench/fig_link.py [--repeat 3]

Prints one JSON document; the figures go to bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from support import nodes

sys.path.insert(0, str(nodes.REPO / "tests" / "harness"))
import link  # tests/harness/link.py

STUDENT = "erin"
JOB = "pimq run wordcount --word more corpus.txt --shards 24"


def wall(room: nodes.Room, command: str) -> tuple[float, dict]:
    start = time.monotonic()
    proc = nodes.ssh(room, STUDENT, command + " --json", timeout=900)
    doc = json.loads(proc.stdout)
    return doc.get("wall_seconds", time.monotonic() - start), doc


def one_profile(room: nodes.Room, profile: str | None, repeat: int, size: int) -> dict:
    containers = [nodes.container(n) for n in [room.head, *room.workers]]
    for c in containers:
        link.shape(c, profile)
    try:
        nodes.ssh(room, STUDENT, "pimq data rm corpus.txt", check=False)
        first = [wall(room, JOB)[0] for _ in range(repeat)]
        start = time.monotonic()
        nodes.ssh(room, STUDENT, "pimq data put corpus.txt --quiet", timeout=900)
        put = time.monotonic() - start
        cached = []
        for _ in range(repeat):
            seconds, doc = wall(room, JOB)
            assert doc["dataset"] and doc["shards_sent_with_bytes"] == 0, doc
            cached.append(seconds)
        start = time.monotonic()
        nodes.ssh(room, STUDENT, JOB + " --local --json", timeout=900)
        local = time.monotonic() - start
        nodes.ssh(room, STUDENT, "pimq data rm corpus.txt")
    finally:
        for c in containers:
            link.shape(c, None)
    rate = {"100mbit": 100e6, "gigabit": 1000e6, "wifi": 40e6}.get(profile or "", 0)
    return {
        "link": profile or "unshaped",
        "first_run_s": round(statistics.median(first), 3),
        "first_run_wire_s": round(size * 8 / rate, 3) if rate else None,
        "put_s": round(put, 3),
        "put_wire_s": round(size * len(room.workers) * 8 / rate, 3) if rate else None,
        "cached_run_s": round(statistics.median(cached), 3),
        "one_process_on_head_s": round(local, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    room = nodes.load_room()
    nodes.ssh(room, STUDENT, "pimq sample shakespeare --copies 40 > corpus.txt", timeout=300)
    size = int(nodes.ssh(room, STUDENT, "stat -c %s corpus.txt").stdout)
    rows = [one_profile(room, p, args.repeat, size) for p in (None, "100mbit")]
    print(json.dumps({"bytes": size, "repeat": args.repeat, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
