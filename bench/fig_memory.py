"""Figure 4, memory: RSS and PSS of one ``pimq worker`` serving 1, 10, 30, 60
vhosts, and how far it grows through one 45 MB word count."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from measure import measure, pimq_wordcount, say
from pimq_fleet import Fleet
from support.private_broker import Broker


def _hwm_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_memory(broker: Broker, out: Path, counts: list[int], text: Path) -> dict[str, Any]:
    import psutil

    say(f"\n== 4. RSS of one pimq worker (default processes) serving {counts} vhosts")
    rows = {}
    for n in counts:
        vhosts = [s.vhost for s in broker.students[:n]]
        with Fleet(broker, out / f"rss-{n}", vhosts, 1, 0, quiet=True) as fleet:
            time.sleep(2.0)
            main = psutil.Process(fleet.procs[0].pid)
            kids = main.children(recursive=True)
            rss_main = main.memory_info().rss
            rss_kids = sum(c.memory_info().rss for c in kids)
            pss_total = 0
            for p in [main, *kids]:
                try:
                    pss_total += p.memory_full_info().pss
                except (psutil.Error, AttributeError):
                    pss_total = 0
                    break
            # then one 45 MB word count through it: how far does it grow?
            measure(pimq_wordcount("wc", "wc", broker, 0, out, fleet, text), broker, None)
            rss_after = main.memory_info().rss
            rows[n] = {
                "rss_main_mb": rss_main / 2**20,
                "rss_children_mb": rss_kids / 2**20,
                "children": len(kids),
                "pss_total_mb": pss_total / 2**20,
                "rss_main_after_job_mb": rss_after / 2**20,
                "peak_rss_main_mb": _hwm_mb(main.pid),
                "peak_rss_child_mb": max((_hwm_mb(c.pid) for c in kids), default=0.0),
            }
            r = rows[n]
            say(
                f"  {n:3d} vhosts: main {r['rss_main_mb']:6.1f} MB RSS, {len(kids)} shard "
                f"processes {r['rss_children_mb']:6.1f} MB RSS, whole worker "
                f"{r['pss_total_mb']:6.1f} MB PSS; after a 45 MB word count: main "
                f"{r['rss_main_after_job_mb']:.1f} MB (peak {r['peak_rss_main_mb']:.1f} MB), "
                f"shard process peak {r['peak_rss_child_mb']:.1f} MB"
            )
    return {"vhosts": rows}
