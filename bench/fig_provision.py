"""Figure 5 (``--with-classroom``): provisioning time of the simulated classroom,
from scratch (``make clean && make provision``) and a second, idempotent run."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from measure import BENCH, say
from pimq_fleet import REPO


def bench_classroom() -> dict[str, Any]:
    say(
        "\n== 5. provisioning the simulated classroom (make clean && make provision; "
        "make provision)"
    )
    timings = {}
    for name, cmd in (("fresh", "make clean && make provision"), ("second", "make provision")):
        start = time.perf_counter()
        log = BENCH / "out" / f"provision-{name}.log"
        with open(log, "wb") as f:
            rc = subprocess.run(
                ["bash", "-c", cmd], cwd=REPO, stdout=f, stderr=subprocess.STDOUT
            ).returncode
        timings[name] = {"seconds": time.perf_counter() - start, "rc": rc, "log": str(log)}
        say(f"  {name}: {timings[name]['seconds']:.1f} s (exit {rc})")
    return {"measured": True, **timings}
