"""The speedup curve: a PNG (matplotlib, Agg) and the same as text for the terminal.

``python bench/plot.py [bench/out/results.json]`` redraws both from saved results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

JOBS = (("wordcount", "word count, 45 MB"), ("pi", "pi (CPU-bound)"))


def _points(results: dict[str, Any], job: str) -> tuple[list[int], list[float]]:
    rows = results["curve"]["rows"]
    ks = sorted(int(k) for k in rows)
    return ks, [rows[str(k) if str(k) in rows else k][f"{job}_speedup"] for k in ks]


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = results["machine"]["nproc"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, (job, title) in zip(axes, JOBS, strict=True):
        ks, speedups = _points(results, job)
        ideal = [min(k, cores) for k in ks]
        ax.plot(ks, ideal, "--", color="grey", label=f"ideal ({cores} cores)")
        ax.axhline(1.0, color="lightgrey", linewidth=1)
        ax.plot(ks, speedups, "o-", color="tab:blue", label="pimq")
        for k, s in zip(ks, speedups, strict=True):
            ax.annotate(
                f"{s:.2f}x",
                (k, s),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=9,
            )
        ax.set_title(title)
        ax.set_xlabel("pimq workers (1 shard process each)")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("speedup over one Python process")
    axes[0].legend(loc="upper left")
    m = results["machine"]
    load = "/".join(f"{x:.1f}" for x in m.get("load_start", ())[:1] + m.get("load_end", ())[:1])
    fig.suptitle(
        f"pimq speedup, {m['nproc']} x {m['cpu_model']}, RabbitMQ {m.get('rabbitmq')} on loopback; "
        f"median of runs; load average at start/end {load} (a shared machine)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def text_chart(results: dict[str, Any], width: int = 40) -> str:
    cores = results["machine"]["nproc"]
    top = max(max(_points(results, job)[1]) for job, _ in JOBS)
    scale = width / max(top, float(cores))
    lines = [f"speedup over one Python process ('|' = ideal, {cores} cores)"]
    for job, title in JOBS:
        lines.append(f"  {title}")
        ks, speedups = _points(results, job)
        for k, s in zip(ks, speedups, strict=True):
            bar = list("#" * round(s * scale) + " " * (width - round(s * scale)))
            ideal = min(round(min(k, cores) * scale), width) - 1
            if 0 <= ideal < len(bar) and bar[ideal] == " ":
                bar[ideal] = "|"
            lines.append(f"    {k} worker{'s' if k > 1 else ' '} {''.join(bar)} {s:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/out/results.json")
    res = json.loads(src.read_text())
    plot(res, Path(__file__).resolve().parent / "speedup.png")
    print(text_chart(res))
