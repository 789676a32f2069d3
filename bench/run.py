"""pimq benchmarks: every figure of bench/RESULTS.md in one run (``make bench``).

A private RabbitMQ on loopback; then, side by side in the same run, each
measurement repeated (``--repeat``, median reported) with the variants
interleaved so that the noise of a shared machine hits them alike:

1. word count (45 MB): pimq vs one Python process vs the tutorials' join
   pattern (N = 1, 2, 3) vs a Celery group, workers = cores;
2. CPU-bound job (``pi``): parallel efficiency of pimq;
3. per-shard overhead: pimq no-op shards vs a bare pika confirm/ack loop;
4. RSS of one ``pimq worker`` serving 1, 10, 30, 60 vhosts;
5. (``--with-classroom``) provisioning time of the simulated classroom;
6. speedup curve, 1 .. cores + 1 workers, as a PNG and a text chart.

Writes ``bench/out/results.json``, ``bench/out/figures.md`` and
``bench/speedup.png`` (``--update-results`` also refreshes the figures in
``bench/RESULTS.md``).
"""

# The figures live in one module each (fig_wordcount, fig_cpu, fig_overhead,
# fig_memory, fig_provision, fig_curve; fig_profile for --profile), measured
# with measure.py; report.py writes the outputs. bench/run.sh puts tests/ on
# PYTHONPATH for the shared broker (support.private_broker).

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from contextlib import nullcontext
from typing import Any

from corpus import corpus
from fig_cpu import bench_cpu
from fig_curve import bench_curve
from fig_memory import bench_memory
from fig_overhead import bench_overhead
from fig_profile import bench_profile
from fig_provision import bench_classroom
from fig_wordcount import bench_wordcount
from machine import machine
from measure import BENCH, GATE, say
from pimq_fleet import RUNTIME, use_runtime
from procs import stop_all
from report import write_outputs
from support.private_broker import private_broker


class _SkipBroker(Exception):
    """Nothing to measure on the broker (``--only classroom``)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median; 3)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="workers for the side-by-side figures (cores)",
    )
    parser.add_argument(
        "--pi-samples",
        type=int,
        default=100_000_000,
        help="samples of the CPU-bound job (>= 10 s serial here)",
    )
    parser.add_argument(
        "--curve-pi-samples",
        type=int,
        default=30_000_000,
        help="samples of the CPU-bound job in the speedup curve",
    )
    parser.add_argument("--noop-shards", type=int, default=10_000)
    parser.add_argument(
        "--bare-prefetch",
        default="2,32,128",
        help="prefetch values of the bare pika loop (2: pimq's for slow "
        "shards; 128: pimq's deepest window, taken for tiny quick shards)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one run each, smaller CPU job (a smoke test, not figures)",
    )
    parser.add_argument(
        "--runtime-rev",
        metavar="REV",
        help="measure pimq as committed at REV (e.g. HEAD), not the working tree",
    )
    parser.add_argument(
        "--only",
        help="comma-separated subset: wordcount,cpu,overhead,memory,curve,classroom "
        "(classroom = --with-classroom)",
    )
    parser.add_argument(
        "--max-other-load",
        type=float,
        default=0.5,
        help="before each run wait (20 s at most, 3 min in all) until other people's "
        "processes use at most this many cores (0: never wait); the load is recorded",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile a pimq word count and no-op job"
    )
    parser.add_argument(
        "--with-classroom",
        action="store_true",
        help="also time provisioning (minutes; needs Docker; runs make clean)",
    )
    parser.add_argument(
        "--update-results", action="store_true", help="write the figures into bench/RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.pi_samples, args.noop_shards = 1, 10_000_000, 2000
        args.curve_pi_samples = 5_000_000
    only = set((args.only or "wordcount,cpu,overhead,memory,curve").split(","))
    if "classroom" in only:
        args.with_classroom = True
    on_broker = bool(only & {"wordcount", "cpu", "overhead", "memory", "curve"}) or args.profile
    out = BENCH / "out"
    out.mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    GATE.max_cores = args.max_other_load
    k = args.workers
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": "make bench  (= bench/run.sh " + " ".join(argv or sys.argv[1:]) + ")",
        "machine": machine(),
        "repeat": args.repeat,
    }
    results["machine"]["runtime"] = use_runtime(args.runtime_rev, out)
    say(f"pimq runtime measured: {RUNTIME['rev']} ({RUNTIME['src']})")
    text, expected = corpus(out)
    try:
        with private_broker(out / "rabbit", vhosts=60) if on_broker else nullcontext() as broker:
            if broker is None:
                raise _SkipBroker
            results["machine"]["rabbitmq"] = broker.version
            say(f"RabbitMQ {broker.version} on 127.0.0.1:{broker.port}")
            if "wordcount" in only:
                results["wordcount"] = bench_wordcount(broker, out, text, expected, k, args.repeat)
            if "cpu" in only:
                results["cpu"] = bench_cpu(broker, out, k, args.pi_samples, args.repeat)
            if "overhead" in only:
                prefetches = [int(x) for x in args.bare_prefetch.split(",")]
                results["overhead"] = bench_overhead(
                    broker, out, k, args.noop_shards, args.repeat, prefetches
                )
            if "memory" in only:
                results["memory"] = bench_memory(broker, out, [1, 10, 30, 60], text)
            if "curve" in only:
                results["curve"] = bench_curve(
                    broker,
                    out,
                    text,
                    expected,
                    list(range(1, k + 2)),
                    args.curve_pi_samples,
                    args.repeat,
                )
            if args.profile:
                results["profiles"] = bench_profile(broker, out, text, k, args.noop_shards)
    except _SkipBroker:
        pass
    finally:
        stop_all()
    results["classroom"] = bench_classroom() if args.with_classroom else {"measured": False}
    results["machine"]["load_end"] = os.getloadavg()
    results["elapsed_seconds"] = time.perf_counter() - started
    results["quiet_wait_seconds"] = GATE.waited
    results["max_other_load"] = GATE.max_cores
    write_outputs(results, out, args.update_results)
    say(
        f"\nbench done in {results['elapsed_seconds'] / 60:.1f} min; bench/out/results.json, "
        "bench/out/figures.md, bench/speedup.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
