"""Figure 2, the CPU-bound job (``pi``): pimq's parallel efficiency against one
process, and this machine's ceiling (the same code on K forked processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from measure import BENCH, Variant, interleave, pimq_pi, say
from pimq_fleet import PIMQ_PYTHON, Fleet, runtime_env
from procs import median
from support.private_broker import Broker


def bench_cpu(broker: Broker, out: Path, k: int, samples: int, repeat: int) -> dict[str, Any]:
    say(f"\n== 2. CPU-bound job: pi, {samples:,} samples, {k} workers")
    env_pimq = runtime_env()
    with Fleet(broker, out / "cpu-pimq", [broker.students[2].vhost], k, 1) as fleet:
        serial = Variant(
            "serial",
            "one process, pimq's pi code",
            [str(PIMQ_PYTHON), str(BENCH / "serial.py"), "pi", str(samples)],
            env_pimq,
        )
        pimq = pimq_pi("pimq", f"pimq, {k} workers x 1 process", broker, 2, out, fleet, samples)
        ideal = Variant(
            "ideal",
            f"{k} forked processes, no broker (this machine's ceiling)",
            [*serial.cmd, "--processes", str(k)],
            env_pimq,
        )
        interleave([serial, pimq, ideal], broker, None, repeat, warmup=False)
    hits = {r["result"] for r in serial.runs + ideal.runs} | {
        r["result"]["hits"] for r in pimq.runs
    }
    if len(hits) != 1:
        raise RuntimeError(f"pi: serial and pimq disagree on the hit count: {sorted(hits)}")
    efficiency = serial.seconds() / (pimq.seconds() * k)
    cpu_ratio = median([r["cpu"] for r in serial.runs]) / median([r["cpu"] for r in pimq.runs])
    return {
        "samples": samples,
        "workers": k,
        "efficiency": efficiency,
        "ceiling": serial.seconds() / (ideal.seconds() * k),
        "cpu_efficiency": cpu_ratio,
        "variants": {
            "serial": serial.summary(),
            "pimq": pimq.summary(),
            "ideal": ideal.summary(),
        },
    }
