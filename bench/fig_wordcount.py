"""Figure 1, word count (45 MB): pimq vs one Python process vs the tutorials'
join pattern (N = 1, 2, 3) vs a Celery group, workers = cores."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from corpus import WORD
from measure import BENCH, BENCH_PY, Variant, interleave, pimq_wordcount, say
from pimq_fleet import PIMQ_PYTHON, Fleet, runtime_env
from procs import spawn_ready, stop
from support.private_broker import Broker

JOIN = [BENCH_PY, str(BENCH / "join_pattern.py")]


def _celery_worker(out: Path, k: int, env: dict[str, str]) -> subprocess.Popen:
    """``celery worker`` with ``k`` prefork processes, ready."""
    cmd = [BENCH_PY, "-m", "celery", "-A", "celery_wordcount", "worker"]
    cmd += ["--concurrency", str(k), "--pool", "prefork"]
    cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    cmd += ["--loglevel", "INFO", "-n", "bench@localhost"]
    return spawn_ready(cmd, out / "celery-worker.log", "ready.", env, timeout=90)


def _join_workers(broker: Broker, out: Path, n: int) -> list[subprocess.Popen]:
    """The ``n`` workers of the join pattern with N = ``n``, consuming."""
    url = broker.url(f"join{n}")
    return [
        spawn_ready([*JOIN, "worker", str(i), WORD, url], out / f"join{n}-{i}.log", "consuming")
        for i in range(n)
    ]


def bench_wordcount(
    broker: Broker, out: Path, text: Path, expected: int, k: int, repeat: int
) -> dict[str, Any]:
    say(
        f"\n== 1. word count: {text.stat().st_size / 1e6:.1f} MB, count of {WORD!r} "
        f"(grep: {expected}), {k} workers"
    )
    shards = max(4, 4 * k)  # pimq's default for k workers, given to Celery too
    env_pimq = runtime_env()
    env_celery = runtime_env(BENCH_CELERY_URL=broker.url("celery"), PYTHONPATH=str(BENCH))
    fleets: list[Fleet] = []
    helpers: list[subprocess.Popen] = []
    try:
        pimq_k = Fleet(broker, out / "wc-pimq", [broker.students[0].vhost], k, 1).start()
        pimq_pi = Fleet(broker, out / "wc-pimq-pi", [broker.students[1].vhost], 1, k).start()
        fleets += [pimq_k, pimq_pi]
        celery = _celery_worker(out, k, env_celery)
        helpers.append(celery)
        join_workers: dict[int, list[int]] = {}
        for n in (1, 2, 3):
            workers = _join_workers(broker, out, n)
            helpers += workers
            join_workers[n] = [p.pid for p in workers]
        serial = [str(PIMQ_PYTHON), str(BENCH / "serial.py"), "wordcount", str(text), WORD]
        variants = [
            Variant("serial", "one process, re.findall(rb'\\bmore\\b')", serial, env_pimq),
            pimq_wordcount("pimq", f"pimq, {k} workers x 1 process", broker, 0, out, pimq_k, text),
            Variant(
                "celery",
                f"Celery group, {k} processes, {shards} tasks",
                [BENCH_PY, str(BENCH / "celery_wordcount.py"), str(text), WORD, str(shards)],
                env_celery,
                [celery.pid],
            ),
            *[
                Variant(
                    f"join{n}",
                    f"join pattern, N = {n}",
                    [*JOIN, "run", str(text), WORD, str(n), broker.url(f"join{n}")],
                    None,
                    join_workers[n],
                )
                for n in (1, 2, 3)
            ],
            pimq_wordcount(
                "pimq_pi", f"pimq, 1 worker x {k} processes (a Pi)", broker, 1, out, pimq_pi, text
            ),
            Variant(
                "serial_str",
                "one process, re.findall(r'\\bmore\\b') on str",
                [*serial, "--how", "str"],
                env_pimq,
            ),
            Variant(
                "serial_pimqfn",
                "one process, pimq's count_word()",
                [*serial, "--how", "pimq"],
                env_pimq,
            ),
        ]
        interleave(variants, broker, expected, repeat)
        return {
            "bytes": text.stat().st_size,
            "word": WORD,
            "expected": expected,
            "workers": k,
            "shards": shards,
            "variants": {v.name: v.summary() for v in variants},
        }
    finally:
        for f in fleets:
            f.stop()
        for p in helpers:
            stop(p)
