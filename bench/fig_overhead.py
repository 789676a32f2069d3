"""Figure 3, per-shard overhead: pimq no-op shards against the bare pika
confirm/ack loop (``bare_loop.py``) at each ``--bare-prefetch`` value, and the
same loop carrying pimq's message properties."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from measure import BENCH, BENCH_PY, Variant, interleave, pimq_variant, say
from pimq_fleet import PIMQ_PYTHON, Fleet, runtime_env
from procs import spawn_ready, stop
from support.private_broker import Broker

BARE = [BENCH_PY, str(BENCH / "bare_loop.py")]

#: Prints the measured runtime's result delivery mode; ``RESULT_PROPS`` lives in
#: ``pimq.protocol.topology`` now, in ``pimq.worker`` (a module) before (``--runtime-rev``).
_DELIVERY_MODE = """\
try:
    from pimq.protocol.topology import RESULT_PROPS as p
except ImportError:
    from pimq.worker import RESULT_PROPS as p
print(p.delivery_mode or 1)
"""


def result_delivery_mode() -> int:
    """Whether the measured runtime publishes its results transient (1) or persistent (2)."""
    out = subprocess.run(
        [str(PIMQ_PYTHON), "-c", _DELIVERY_MODE],
        env=runtime_env(),
        capture_output=True,
        text=True,
    )
    if out.returncode == 0 and out.stdout.strip():
        return int(out.stdout.strip())
    say(f"  (result delivery mode unknown, taken as persistent: {out.stderr.strip()[-300:]})")
    return 2


def _bare_consumers(
    broker: Broker, out: Path, k: int, prefetch: int, mode: int
) -> list[subprocess.Popen]:
    """``k`` bare-loop consumers with this prefetch, consuming."""
    flags = ["--persistent-replies"] if mode == 2 else []
    cmd = [*BARE, "worker", broker.url("bare"), "--prefetch", str(prefetch), *flags]
    return [spawn_ready(cmd, out / f"bare-p{prefetch}-{i}.log", "consuming") for i in range(k)]


def bench_overhead(
    broker: Broker, out: Path, k: int, shards: int, repeat: int, prefetches: list[int]
) -> dict[str, Any]:
    mode = result_delivery_mode()
    kind = "persistent" if mode == 2 else "transient"
    say(
        f"\n== 3. per-shard overhead: {shards} no-op shards, {k} workers; bare loop with "
        f"prefetch {prefetches}, {kind} replies like pimq's results"
    )
    helpers: list[subprocess.Popen] = []
    bare = [*BARE, "run", broker.url("bare"), str(shards)]
    try:
        with Fleet(broker, out / "noop-pimq", [broker.students[3].vhost], k, 1) as fleet:
            noop = ("noop", "--shards", str(shards))
            pimq = pimq_variant("pimq", f"pimq noop, {k} workers", broker, 3, out, fleet, *noop)
            variants = [pimq]
            for pf in prefetches:
                consumers = _bare_consumers(broker, out, k, pf, mode)
                helpers += consumers
                pids = [p.pid for p in consumers]
                v = Variant(
                    f"bare_p{pf}", f"bare pika loop, {k} consumers, prefetch {pf}", bare, None, pids
                )
                variants.append(v)
                group = [pimq, v]
                if pf == prefetches[-1]:  # the same loop carrying pimq's message properties
                    like = Variant(
                        f"bare_p{pf}_pimqlike",
                        f"bare pika loop, prefetch {pf}, pimq's headers and result size",
                        [*bare, "--pimq-like"],
                        None,
                        pids,
                    )
                    variants.append(like)
                    group.append(like)
                # pimq is measured beside every bare configuration (same moment, same noise)
                interleave(group, broker, shards, repeat, warmup=pf == prefetches[0])
                for p in helpers:
                    stop(p)
                helpers.clear()
        rates = {v.name: shards / v.seconds() for v in variants}
        plain = [n for n in rates if n.startswith("bare") and not n.endswith("pimqlike")]
        best = max(plain, key=lambda n: rates[n])
        return {
            "shards": shards,
            "workers": k,
            "prefetches": prefetches,
            "replies": kind,
            "rates": rates,
            "best_bare": best,
            "ratio": rates["pimq"] / rates[best],
            "variants": {v.name: v.summary() for v in variants},
        }
    finally:
        for p in helpers:
            stop(p)
