"""Measuring one client run, and the variants of a figure side by side.

A :class:`Variant` is one way of getting a figure (a client command and the
processes that serve it); :func:`interleave` runs a warm-up round and then
``repeat`` rounds of every variant in turn, each run behind the quiet gate
(:data:`GATE`), and records the client's own time, the process wall time and
the CPU time of client, servers, their children and the broker.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus import WORD
from pimq_fleet import REPO, Fleet, pimq_cmd, pimq_env
from procs import QuietGate, children_cpu, median, run_json, tree_cpu
from support.private_broker import Broker

BENCH = REPO / "bench"
BENCH_PY = sys.executable
#: Waits before each run until other people's processes use few cores (see --max-other-load).
GATE = QuietGate(0.5)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Variant:
    """One way of getting a figure: a client command and the processes that serve it."""

    name: str
    label: str
    cmd: list[str]
    env: dict[str, str] | None = None
    servers: list[int] = field(default_factory=list)
    pimq: bool = False  # the client is ``pimq run --json``
    runs: list[dict[str, Any]] = field(default_factory=list)

    def seconds(self) -> float:
        return median([r["seconds"] for r in self.runs])

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "median_seconds": self.seconds(),
            "median_wall": median([r["wall"] for r in self.runs]),
            "median_cpu": median([r["cpu"] for r in self.runs]),
            "median_others": median([r.get("others", float("nan")) for r in self.runs]),
            "median_cpu_parts": {
                part: median([r["cpu_parts"][part] for r in self.runs])
                for part in ("client", "servers", "server_children", "broker")
            },
            "runs": self.runs,
        }


def measure(v: Variant, broker: Broker, expected: int | None) -> dict[str, Any]:
    """Run the client once. seconds = the client's own timing (read input .. result);
    wall = the client process end to end; cpu = client + servers + broker CPU seconds."""
    others = GATE.wait()
    servers0, broker0, client0 = tree_cpu(v.servers), tree_cpu([broker.server_pid]), children_cpu()
    doc, wall = run_json(v.cmd, v.env)
    time.sleep(0.2)  # let servers finish their bookkeeping (acks) before sampling CPU
    servers, brk = tree_cpu(v.servers), tree_cpu([broker.server_pid])
    parts = {
        "client": children_cpu() - client0,
        "servers": servers[0] - servers0[0],
        "server_children": servers[1] - servers0[1],
        "broker": sum(brk) - sum(broker0),
    }
    cpu = sum(parts.values())
    result = doc["result"]
    seconds = doc["wall_seconds"] if v.pimq else doc["seconds"]
    if expected is not None and result != expected:
        raise RuntimeError(f"{v.label}: result {result}, expected {expected}")
    run = {
        "seconds": seconds,
        "wall": wall,
        "cpu": cpu,
        "cpu_parts": parts,
        "others": others,
        "result": result,
    }
    v.runs.append(run)
    return run


def interleave(
    variants: list[Variant], broker: Broker, expected: int | None, repeat: int, warmup: bool = True
) -> None:
    """Warm-up round (not counted), then ``repeat`` rounds of every variant in turn."""
    rounds = [("warm-up", False)] if warmup else []
    rounds += [(f"{i + 1}/{repeat}", True) for i in range(repeat)]
    for name, counted in rounds:
        for v in variants:
            run = measure(v, broker, expected)
            if not counted:
                v.runs.pop()
            cp = run["cpu_parts"]
            say(
                f"  [{name}] {v.label:<46} {run['seconds']:7.3f} s  "
                f"(process {run['wall']:6.3f} s; CPU {run['cpu']:5.2f} s = client "
                f"{cp['client']:.2f} + servers {cp['servers']:.2f} + their children "
                f"{cp['server_children']:.2f} + broker {cp['broker']:.2f}; others' load "
                f"{run['others']:.1f} cores before)"
            )


def pimq_variant(
    name: str, label: str, broker: Broker, vhost_index: int, out: Path, fleet: Fleet, *args: str
) -> Variant:
    """``pimq run ARGS --json`` as student ``vhost_index``, served by ``fleet``."""
    student = broker.students[vhost_index]
    cfg = broker.student_config(student, out / f"{student.vhost}.yaml")
    cmd = pimq_cmd("run", *args, "--json", "--timeout", "600")
    return Variant(name, label, cmd, pimq_env(out, cfg), [p.pid for p in fleet.procs], True)


def pimq_wordcount(
    name: str, label: str, broker: Broker, vhost_index: int, out: Path, fleet: Fleet, text: Path
) -> Variant:
    """The pimq word count of :data:`corpus.WORD` in ``text``."""
    return pimq_variant(
        name, label, broker, vhost_index, out, fleet, "wordcount", "--word", WORD, str(text)
    )


def pimq_pi(
    name: str, label: str, broker: Broker, vhost_index: int, out: Path, fleet: Fleet, samples: int
) -> Variant:
    """The pimq ``pi`` job with ``samples`` samples."""
    return pimq_variant(
        name, label, broker, vhost_index, out, fleet, "pi", "--samples", str(samples)
    )
