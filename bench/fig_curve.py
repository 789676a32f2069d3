"""Figure 6, the speedup curve: 1 .. cores + 1 workers, word count and ``pi``,
each against its one-process baseline (drawn by ``plot.py``, tabled by ``report.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corpus import WORD
from measure import BENCH, Variant, interleave, pimq_pi, pimq_wordcount, say
from pimq_fleet import PIMQ_PYTHON, Fleet, runtime_env
from support.private_broker import Broker


def bench_curve(
    broker: Broker, out: Path, text: Path, expected: int, ks: list[int], samples: int, repeat: int
) -> dict[str, Any]:
    """For each k: the one-process baselines and pimq with k workers, interleaved."""
    say(f"\n== 6. speedup curve: {ks} workers (1 process each); pi with {samples:,} samples")
    serial = [str(PIMQ_PYTHON), str(BENCH / "serial.py")]
    rows: dict[int, dict[str, Any]] = {}
    for k in ks:
        with Fleet(broker, out / f"curve-{k}", [broker.students[4].vhost], k, 1) as fleet:
            s_wc = Variant(
                "serial_wc",
                "one process, word count",
                [*serial, "wordcount", str(text), WORD],
                runtime_env(),
            )
            wc = pimq_wordcount("wc", f"pimq wordcount, {k} workers", broker, 4, out, fleet, text)
            s_pi = Variant(
                "serial_pi", "one process, pi", [*serial, "pi", str(samples)], runtime_env()
            )
            pi = pimq_pi("pi", f"pimq pi, {k} workers", broker, 4, out, fleet, samples)
            interleave([s_wc, wc], broker, expected, repeat)
            interleave([s_pi, pi], broker, None, repeat, warmup=False)
        rows[k] = {
            "wordcount": wc.summary(),
            "pi": pi.summary(),
            "serial_wordcount": s_wc.summary(),
            "serial_pi": s_pi.summary(),
            "wordcount_speedup": s_wc.seconds() / wc.seconds(),
            "pi_speedup": s_pi.seconds() / pi.seconds(),
        }
    return {"workers": ks, "pi_samples": samples, "rows": rows}
