"""Turn bench/out/results.json into the markdown figures of bench/RESULTS.md.

``python bench/report.py [results.json] [--update-results]``
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

START, END = "<!-- figures:start -->", "<!-- figures:end -->"
PSTART, PEND = "<!-- profiles:start -->", "<!-- profiles:end -->"


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**missed**")


def _get(d: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    wc = _get(r, "wordcount", "variants")
    if wc:
        pimq, serial, celery = (wc[n]["median_seconds"] for n in ("pimq", "serial", "celery"))
        rows.append(
            (
                "word count: pimq / one process",
                "<= 0.75x",
                f"{pimq / serial:.2f}x ({pimq:.2f} s / {serial:.2f} s)",
                _status(pimq / serial <= 0.75),
            )
        )
        rows.append(
            (
                "word count: pimq / Celery group",
                "<= 0.5x",
                f"{pimq / celery:.2f}x ({pimq:.2f} s / {celery:.2f} s)",
                _status(pimq / celery <= 0.5),
            )
        )
    cpu = r.get("cpu")
    if cpu:
        s, p = (cpu["variants"][n]["median_seconds"] for n in ("serial", "pimq"))
        rows.append(
            (
                f"CPU job (pi): efficiency, {cpu['workers']} workers",
                ">= 90 %",
                f"{cpu['efficiency'] * 100:.0f} % ({s:.1f} s / ({p:.1f} s x {cpu['workers']}))"
                + (
                    f"; this machine's ceiling (forked processes, no broker): "
                    f"{cpu['ceiling'] * 100:.0f} %"
                    if "ceiling" in cpu
                    else ""
                ),
                _status(cpu["efficiency"] >= 0.9),
            )
        )
    ov = r.get("overhead")
    if ov:
        rate = ov["rates"]["pimq"]
        best = ov["best_bare"]
        bare = ov["rates"][best]
        label = ov["variants"][best]["label"]
        rows.append(("no-op shards per second", ">= 4000", f"{rate:.0f}", _status(rate >= 4000)))
        rows.append(
            (
                "pimq / bare pika loop (its best prefetch setting)",
                ">= 80 %",
                f"{ov['ratio'] * 100:.0f} % ({rate:.0f} / {bare:.0f} per s, {label})",
                _status(ov["ratio"] >= 0.8),
            )
        )
    mem = _get(r, "memory", "vhosts")
    if mem:
        row = mem.get("30") or mem.get(30)
        rows.append(
            (
                "RSS of one pimq worker, 30 vhosts (main process)",
                "<= 80 MB",
                f"{row['rss_main_mb']:.1f} MB (whole worker with its "
                f"{row['children']} shard processes: {row['pss_total_mb']:.1f} MB PSS)",
                _status(row["rss_main_mb"] <= 80),
            )
        )
    cl = r.get("classroom") or {}
    for name, limit, label in (("fresh", 240, "<= 4 min"), ("second", 30, "<= 30 s")):
        what = f"provisioning, {'fresh 1 + 3 classroom' if name == 'fresh' else 'second run'}"
        if cl.get("measured") and name in cl:
            t = cl[name]
            ok = t["rc"] == 0 and t["seconds"] <= limit
            rows.append((what, label, f"{t['seconds']:.0f} s (exit {t['rc']})", _status(ok)))
        else:
            rows.append((what, label, "not measured this run", _status(None)))
    return rows


def _parts(v: dict[str, Any]) -> str:
    p = v.get("median_cpu_parts")
    if not p:
        return "?"
    return " + ".join(f"{p[k]:.2f}" for k in ("client", "servers", "server_children", "broker"))


def _others(v: dict[str, Any]) -> str:
    x = v.get("median_others")
    return "?" if x is None or x != x else f"{x:.1f}"


def _variant_table(variants: dict[str, Any], ref: str | None = None) -> list[str]:
    lines = [
        "| variant | median s | process s | CPU s: all = client + servers + their children + "
        "broker | cores busy | others' load | runs (s) |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    base = variants[ref]["median_seconds"] if ref else None
    for v in variants.values():
        runs = ", ".join(f"{x['seconds']:.2f}" for x in v["runs"])
        rel = f" ({v['median_seconds'] / base:.2f}x)" if base else ""
        busy = v["median_cpu"] / v["median_wall"] if v["median_wall"] else 0.0
        lines.append(
            f"| {v['label']} | {v['median_seconds']:.3f}{rel} | {v['median_wall']:.2f} "
            f"| {v['median_cpu']:.2f} = {_parts(v)} | {busy:.2f} | {_others(v)} | {runs} |"
        )
    return lines


def figures_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    out = [
        f"Run of {m['date']} at `{m['git']}`, {r['repeat']} runs per figure (median), "
        f"{r['elapsed_seconds'] / 60:.1f} min; pimq runtime measured: "
        f"{m.get('runtime', 'working tree')}. Before each run the bench waited until other "
        f"processes used at most {r.get('max_other_load', '?')} cores (20 s at most; "
        f"{r.get('quiet_wait_seconds', 0):.0f} s waited in all); *others' load* is what they "
        "used just before the run.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['nproc']} x {m['cpu_model']} |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| OS, kernel | {m['os']}, {m['kernel']} |",
        f"| Python, pika (runtime `.venv`) | {m['python_runtime']}, {m['pika_runtime']} |",
        f"| Python, pika, Celery (`.venv-bench`) | {m['python_bench']}, {m['pika_bench']}, "
        f"{m['celery']} |",
        f"| RabbitMQ, Erlang | {m.get('rabbitmq')}, {m['erlang']} |",
        "| load average at start, end | "
        + ", ".join("/".join(f"{x:.1f}" for x in m[k]) for k in ("load_start", "load_end"))
        + " |",
        "",
        "### Targets",
        "",
        "| figure | target | measured | |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets(r)],
    ]
    wc = r.get("wordcount")
    if wc:
        out += [
            "",
            f"### 1. Word count, {wc['bytes'] / 1e6:.1f} MB, count of `{wc['word']}` "
            f"= {wc['expected']} (every run checked), {wc['workers']} workers, "
            f"{wc['shards']} shards",
            "",
            *_variant_table(wc["variants"], "serial"),
        ]
    cpu = r.get("cpu")
    if cpu:
        out += [
            "",
            f"### 2. CPU-bound job: pi, {cpu['samples']:,} samples, {cpu['workers']} "
            f"workers: efficiency {cpu['efficiency'] * 100:.0f} % (wall time; the machine's "
            f"ceiling {cpu.get('ceiling', float('nan')) * 100:.0f} %); CPU seconds, "
            f"one process / pimq: {cpu.get('cpu_efficiency', 0) * 100:.0f} %",
            "",
            *_variant_table(cpu["variants"], "serial"),
        ]
    ov = r.get("overhead")
    if ov:
        out += [
            "",
            f"### 3. Per-shard overhead: {ov['shards']} no-op shards, {ov['workers']} workers "
            f"(the bare loop's replies are {ov.get('replies')}, like pimq's results)",
            "",
            "| variant | shards/s | median s | CPU s: all = client + servers + their children + "
            "broker | others' load |",
            "|---|---:|---:|---|---:|",
        ]
        for name, v in ov["variants"].items():
            out.append(
                f"| {v['label']} | {ov['rates'][name]:.0f} | {v['median_seconds']:.2f} "
                f"| {v['median_cpu']:.2f} = {_parts(v)} | {_others(v)} |"
            )
    mem = _get(r, "memory", "vhosts")
    if mem:
        out += [
            "",
            "### 4. Memory of one `pimq worker` (default pool: one shard process per core)",
            "",
            "| vhosts | main process RSS, idle | shard processes RSS | whole worker PSS "
            "| main RSS after a 45 MB word count (peak) | shard process peak |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for n, row in mem.items():
            after = row.get("rss_main_after_job_mb")
            after_s = f"{after:.1f} MB ({row['peak_rss_main_mb']:.1f} MB)" if after else "-"
            child = row.get("peak_rss_child_mb")
            out.append(
                f"| {n} | {row['rss_main_mb']:.1f} MB | {row['rss_children_mb']:.1f} MB "
                f"({row['children']}) | {row['pss_total_mb']:.1f} MB | {after_s} | "
                + (f"{child:.1f} MB |" if child else "- |")
            )
    cv = r.get("curve")
    if cv:
        out += [
            "",
            "### 6. Speedup curve (one-process median / pimq median, measured side by side "
            f"for each k; pi with {cv.get('pi_samples', 0):,} samples)",
            "",
            "| workers | one process wc s | pimq wc s | speedup | one process pi s | pimq pi s "
            "| speedup |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for k, row in cv["rows"].items():
            sw = row.get("serial_wordcount", {}).get("median_seconds", float("nan"))
            sp = row.get("serial_pi", {}).get("median_seconds", float("nan"))
            out.append(
                f"| {k} | {sw:.2f} | {row['wordcount']['median_seconds']:.2f} | "
                f"{row['wordcount_speedup']:.2f}x | {sp:.2f} | "
                f"{row['pi']['median_seconds']:.2f} | {row['pi_speedup']:.2f}x |"
            )
        out += ["", "![speedup](speedup.png)"]
    return "\n".join(out) + "\n"


def _replace_block(text: str, start: str, end: str, body: str) -> str:
    block = f"{start}\n{body}{end}"
    if start in text and end in text:
        return re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    return text + "\n" + block + "\n"


def update_results(path: Path, md: str, profiles: str | None = None) -> None:
    """Rewrite the generated blocks of RESULTS.md (the prose around them is kept)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    text = _replace_block(text, START, END, md)
    if profiles:
        text = _replace_block(text, PSTART, PEND, profiles.rstrip() + "\n")
    path.write_text(text)


def write_outputs(results: dict[str, Any], out: Path, update: bool = False) -> None:
    """What ``run.py`` leaves behind: ``out/results.json``; with the speedup curve,
    ``bench/speedup.png`` and the text chart on stdout; ``out/figures.md``, also on
    stdout; with ``update``, the figures (and profiles) blocks of RESULTS.md."""
    from plot import plot, text_chart

    here = Path(__file__).resolve().parent
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if "curve" in results:
        plot(results, here / "speedup.png")
        print(text_chart(results))
    md = figures_markdown(results)
    (out / "figures.md").write_text(md)
    print(md)
    if update:
        update_results(here / "RESULTS.md", md, results.get("profiles"))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    res = json.loads(Path(args[0] if args else "bench/out/results.json").read_text())
    markdown = figures_markdown(res)
    print(markdown)
    if "--update-results" in sys.argv:
        update_results(
            Path(__file__).resolve().parent / "RESULTS.md", markdown, res.get("profiles")
        )
