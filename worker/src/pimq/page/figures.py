"""What the teacher's page shows, computed from Prometheus' answers (pure).

Every function takes answers of the Prometheus HTTP API as they come
(``data.result`` of an instant vector, ``[{"metric": {...}, "value": [t,
"v"]}]``, or of a range query, ``[{"metric": ..., "values": [[t, "v"], ...]}]``)
or None where a query failed, and never raises on odd ones: a figure it
cannot compute is None, which the page shows as "no data".

The queries are :data:`PI_QUERIES`, :data:`STUDENT_QUERIES` and
:data:`FLEET_USE`; the metric names are the ones ``roles/pimq_monitor``
exports (DESIGN: every target has the label ``pi``; worker metrics carry
``student`` = the vhost; RabbitMQ's per-queue metrics ``vhost`` and ``queue``).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Vector = list[Mapping[str, Any]]

#: per Pi, one instant query each (label ``pi``)
PI_QUERIES: dict[str, str] = {
    "up": 'up{job="node"}',
    "load": "node_load1",
    "temperature": "max by (pi) (node_thermal_zone_temp)",
    "throttled": "pimq_pi_throttled",
    "shards_per_s": 'sum by (pi) (rate(pimq_worker_shards_total{outcome="done"}[1m]))',
    "busy": "pimq_worker_processes_busy",
    "processes": "pimq_worker_processes",
}


def student_queries(head: str) -> dict[str, str]:
    """Per student (label ``vhost`` or ``student``): running jobs (result
    queues with a consumer, the controller, on the head broker), shards
    queued there, pool seconds per second over the last minute, and the
    fleet's processes (one series)."""
    pi = f'pi="{head}"'
    return {
        "jobs": (
            f"count by (vhost) (rabbitmq_queue_consumers"
            f'{{{pi},queue=~"pimq\\\\.result\\\\..+"}} > 0)'
        ),
        "queued": (
            f"sum by (vhost) (rabbitmq_queue_messages_ready"
            f'{{{pi},queue=~"pimq\\\\.tasks|pimq\\\\.job\\\\..+"}})'
        ),
        "seconds": "sum by (student) (rate(pimq_worker_shard_seconds_total[1m]))",
        "capacity": "sum(pimq_worker_processes)",
    }


#: the share of the fleet's processes busy, over time (a range query)
FLEET_USE = "sum(pimq_worker_processes_busy) / sum(pimq_worker_processes)"


def value(sample: Mapping[str, Any]) -> float | None:
    """The number of one instant sample (None: absent, NaN or not a number)."""
    try:
        v = float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def by_label(vector: Vector | None, label: str) -> dict[str, float] | None:
    """``{label value: number}`` of an instant vector; None if the query failed.
    Several series with one label value (two exporters, say) are summed."""
    if vector is None:
        return None
    out: dict[str, float] = {}
    for sample in vector:
        if not isinstance(sample, Mapping):
            continue
        key = (sample.get("metric") or {}).get(label)
        v = value(sample)
        if isinstance(key, str) and key and v is not None:
            out[key] = out.get(key, 0.0) + v
    return out


def scalar(vector: Vector | None) -> float | None:
    """The one number of a one-series answer (``sum(...)``); None if none."""
    if not vector:
        return None
    return value(vector[0]) if isinstance(vector[0], Mapping) else None


def pi_rows(pis: Sequence[str], answers: Mapping[str, Vector | None]) -> list[dict[str, Any]]:
    """One row per Pi, the inventory's first (in its order), then any other Pi
    Prometheus knows: ``up`` True/False (None: no data), ``load``,
    ``temperature`` (°C), ``throttled`` (the vcgencmd bit mask),
    ``shards_per_s``, ``busy`` and ``processes``. A Pi that Prometheus has no
    ``up`` for while it answers for others is down (never scraped or gone)."""
    figures = {key: by_label(answers.get(key), "pi") for key in PI_QUERIES}
    up = figures["up"]
    names = list(dict.fromkeys([*pis, *(up or {})]))
    rows = []
    for name in names:
        row: dict[str, Any] = {"pi": name}
        for key in PI_QUERIES:
            got = figures[key]
            row[key] = None if got is None else got.get(name)
        if up is not None:
            row["up"] = bool(up.get(name, 0.0) >= 1.0)
        if row["up"] is False:  # a down Pi's last figures are stale: not shown
            for key in ("load", "temperature", "shards_per_s", "busy"):
                row[key] = None
        rows.append(row)
    return rows


def student_rows(answers: Mapping[str, Vector | None]) -> list[dict[str, Any]] | None:
    """The students active now (a running job, shards queued, or shards run
    in the last minute), busiest first: ``jobs``, ``queued``, ``share`` (of
    the fleet's processes up now, 0..1; None without the figures). None when
    no query answered."""
    jobs = by_label(answers.get("jobs"), "vhost")
    queued = by_label(answers.get("queued"), "vhost")
    seconds = by_label(answers.get("seconds"), "student")
    capacity = scalar(answers.get("capacity"))
    if jobs is None and queued is None and seconds is None:
        return None
    names = set(jobs or {}) | set(queued or {}) | set(seconds or {})
    rows = []
    for name in names:
        j = int((jobs or {}).get(name, 0))
        q = int((queued or {}).get(name, 0))
        s = (seconds or {}).get(name, 0.0)
        if not (j or q or s > 0.001):
            continue
        share = None
        if seconds is not None and capacity:
            share = max(0.0, min(1.0, s / capacity))
        rows.append({"student": name, "jobs": j, "queued": q, "share": share})
    rows.sort(key=lambda r: (-(r["share"] or 0.0), -r["jobs"], -r["queued"], r["student"]))
    return rows


def series(matrix: Vector | None) -> list[tuple[float, float]] | None:
    """The (time, value) points of a one-series range answer (finite only)."""
    if matrix is None:
        return None
    if not matrix:
        return []
    out = []
    for point in matrix[0].get("values") or []:
        try:
            t, v = float(point[0]), float(point[1])
        except (IndexError, TypeError, ValueError):
            continue
        if math.isfinite(t) and math.isfinite(v):
            out.append((t, v))
    return out


def svg_plot(
    points: Sequence[tuple[float, float]] | None,
    now: float,
    span: float = 3600.0,
    width: int = 640,
    height: int = 160,
) -> str:
    """The fleet's use (0..1) over the last ``span`` s as an inline SVG: a
    filled line, grid lines at 0/50/100 % and a mark every 15 minutes."""
    pad_l, pad_r, pad_b, pad_t = 40, 24, 18, 6
    w, h = width - pad_l - pad_r, height - pad_b - pad_t
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {height}"'
        ' width="100%" role="img" aria-label="fleet use, last hour">'
    ]
    for frac in (0.0, 0.5, 1.0):
        y = pad_t + h * (1 - frac)
        parts.append(
            f'<line x1="{pad_l}" y1="{y:.1f}" x2="{pad_l + w}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{pad_l - 4}" y="{y + 4:.1f}" text-anchor="end">{int(frac * 100)} %</text>'
        )
    for minutes in range(0, int(span // 60) + 1, 15):
        x = pad_l + w * (1 - minutes * 60 / span)
        label = "now" if minutes == 0 else f"-{minutes} min"
        parts.append(
            f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle">{html.escape(label)}</text>'
        )
    if points is None:
        parts.append(
            f'<text x="{pad_l + w / 2:.1f}" y="{pad_t + h / 2:.1f}" text-anchor="middle"'
            ' class="nodata">no data</text>'
        )
    else:
        coords = []
        for t, v in points:
            if now - span <= t <= now:
                x = pad_l + w * (1 - (now - t) / span)
                y = pad_t + h * (1 - max(0.0, min(1.0, v)))
                coords.append(f"{x:.1f},{y:.1f}")
        if coords:
            first_x = coords[0].split(",")[0]
            last_x = coords[-1].split(",")[0]
            base = f"{pad_t + h:.1f}"
            parts.append(
                f'<polygon class="area" points="{first_x},{base} {" ".join(coords)}'
                f' {last_x},{base}"/>'
                f'<polyline class="line" points="{" ".join(coords)}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def job_rows(records: Iterable[Mapping[str, Any]], now: float | None = None) -> list[dict]:
    """The record's jobs newest first, with ``ago`` (seconds since it ended)."""
    now = time.time() if now is None else now
    rows = [dict(r, ago=max(0.0, now - float(r.get("finished") or 0))) for r in records]
    rows.sort(key=lambda r: -float(r.get("finished") or 0))
    return rows


def ago(seconds: float) -> str:
    """``12 s``, ``4 min``, ``2 h``, ``3 d`` ago."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"
