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

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pimq_fleet import (
    PIMQ_PYTHON,
    REPO,
    RUNTIME,
    Fleet,
    pimq_cmd,
    pimq_env,
    runtime_env,
    use_runtime,
)
from procs import (
    QuietGate,
    children_cpu,
    median,
    run_json,
    spawn,
    stop,
    stop_all,
    tree_cpu,
    wait_for_text,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared broker
from private_broker import Broker, private_broker

BENCH = REPO / "bench"
BENCH_PY = sys.executable
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
WORD = "more"
COPIES = 40
#: Waits before each run until other people's processes use few cores (see --max-other-load).
GATE = QuietGate(0.5)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- measuring one client run ---------------------------------------------------
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


# -- the machine ------------------------------------------------------------------
def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine() -> dict[str, Any]:
    import psutil

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    code = "import pika, sys; print(pika.__version__, sys.version.split()[0])"
    pika_runtime, py_runtime = _first_line([str(PIMQ_PYTHON), "-c", code]).split()
    import celery
    import pika

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python_runtime": py_runtime,
        "pika_runtime": pika_runtime,
        "python_bench": platform.python_version(),
        "pika_bench": pika.__version__,
        "celery": celery.__version__,
        "erlang": _first_line(["dpkg-query", "-W", "-f", "${Version}", "erlang-base"]),
        "load_start": os.getloadavg(),
        "git": _first_line(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# -- inputs ---------------------------------------------------------------------
def corpus(out: Path) -> tuple[Path, int]:
    """40 copies of tinyshakespeare and the grep count of WORD in it."""
    path = out / "corpus-45MB.txt"
    data = DATA.read_bytes()
    if not path.exists() or path.stat().st_size != len(data) * COPIES:
        path.write_bytes(data * COPIES)
    grep = subprocess.run(
        f"grep -ow -- {WORD} {path} | wc -l",
        shell=True,
        capture_output=True,
        text=True,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return path, int(grep.stdout)


def pimq_variant(
    name: str, label: str, broker: Broker, vhost_index: int, out: Path, fleet: Fleet, *args: str
) -> Variant:
    student = broker.students[vhost_index]
    cfg = broker.student_config(student, out / f"{student.vhost}.yaml")
    cmd = pimq_cmd("run", *args, "--json", "--timeout", "600")
    return Variant(name, label, cmd, pimq_env(out, cfg), [p.pid for p in fleet.procs], True)


# -- 1. word count --------------------------------------------------------------
def bench_wordcount(
    broker: Broker, out: Path, text: Path, expected: int, k: int, repeat: int
) -> dict[str, Any]:
    say(
        f"\n== 1. word count: {text.stat().st_size / 1e6:.1f} MB, count of {WORD!r} "
        f"(grep: {expected}), {k} workers"
    )
    shards = max(4, 4 * k)  # pimq's default for k workers, given to Celery too
    env_pimq = runtime_env()
    env_celery = runtime_env(BENCH_CELERY_URL=broker.url("celery"), PYTHONPATH=str(BENCH))
    fleets: list[Fleet] = []
    helpers: list[subprocess.Popen] = []
    try:
        pimq_k = Fleet(broker, out / "wc-pimq", [broker.students[0].vhost], k, 1).start()
        pimq_pi = Fleet(broker, out / "wc-pimq-pi", [broker.students[1].vhost], 1, k).start()
        fleets += [pimq_k, pimq_pi]
        log = out / "celery-worker.log"
        log.write_text("")
        celery = spawn(
            [
                BENCH_PY,
                "-m",
                "celery",
                "-A",
                "celery_wordcount",
                "worker",
                "--concurrency",
                str(k),
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                "-n",
                "bench@localhost",
            ],
            log,
            env_celery,
        )
        helpers.append(celery)
        wait_for_text(log, "ready.", 1, celery, timeout=90)
        join_workers: dict[int, list[int]] = {}
        for n in (1, 2, 3):
            join_workers[n] = []
            for i in range(n):
                jlog = out / f"join{n}-{i}.log"
                jlog.write_text("")
                p = spawn(
                    [
                        BENCH_PY,
                        str(BENCH / "join_pattern.py"),
                        "worker",
                        str(i),
                        WORD,
                        broker.url(f"join{n}"),
                    ],
                    jlog,
                )
                helpers.append(p)
                wait_for_text(jlog, "consuming", 1, p)
                join_workers[n].append(p.pid)
        serial = [str(PIMQ_PYTHON), str(BENCH / "serial.py"), "wordcount", str(text), WORD]
        variants = [
            Variant("serial", "one process, re.findall(rb'\\bmore\\b')", serial, env_pimq),
            pimq_variant(
                "pimq",
                f"pimq, {k} workers x 1 process",
                broker,
                0,
                out,
                pimq_k,
                "wordcount",
                "--word",
                WORD,
                str(text),
            ),
            Variant(
                "celery",
                f"Celery group, {k} processes, {shards} tasks",
                [BENCH_PY, str(BENCH / "celery_wordcount.py"), str(text), WORD, str(shards)],
                env_celery,
                [celery.pid],
            ),
            *[
                Variant(
                    f"join{n}",
                    f"join pattern, N = {n}",
                    [
                        BENCH_PY,
                        str(BENCH / "join_pattern.py"),
                        "run",
                        str(text),
                        WORD,
                        str(n),
                        broker.url(f"join{n}"),
                    ],
                    None,
                    join_workers[n],
                )
                for n in (1, 2, 3)
            ],
            pimq_variant(
                "pimq_pi",
                f"pimq, 1 worker x {k} processes (a Pi)",
                broker,
                1,
                out,
                pimq_pi,
                "wordcount",
                "--word",
                WORD,
                str(text),
            ),
            Variant(
                "serial_str",
                "one process, re.findall(r'\\bmore\\b') on str",
                [*serial, "--how", "str"],
                env_pimq,
            ),
            Variant(
                "serial_pimqfn",
                "one process, pimq's count_word()",
                [*serial, "--how", "pimq"],
                env_pimq,
            ),
        ]
        interleave(variants, broker, expected, repeat)
        return {
            "bytes": text.stat().st_size,
            "word": WORD,
            "expected": expected,
            "workers": k,
            "shards": shards,
            "variants": {v.name: v.summary() for v in variants},
        }
    finally:
        for f in fleets:
            f.stop()
        for p in helpers:
            stop(p)


# -- 2. CPU-bound job -------------------------------------------------------------
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
        pimq = pimq_variant(
            "pimq",
            f"pimq, {k} workers x 1 process",
            broker,
            2,
            out,
            fleet,
            "pi",
            "--samples",
            str(samples),
        )
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


# -- 3. per-shard overhead --------------------------------------------------------
def result_delivery_mode() -> int:
    """Whether the measured runtime publishes its results transient (1) or persistent (2)."""
    code = "from pimq.worker import RESULT_PROPS as p; print(p.delivery_mode or 1)"
    out = subprocess.run(
        [str(PIMQ_PYTHON), "-c", code], env=runtime_env(), capture_output=True, text=True
    )
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else 2


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
    bare = [BENCH_PY, str(BENCH / "bare_loop.py")]
    try:
        with Fleet(broker, out / "noop-pimq", [broker.students[3].vhost], k, 1) as fleet:
            pimq = pimq_variant(
                "pimq",
                f"pimq noop, {k} workers",
                broker,
                3,
                out,
                fleet,
                "noop",
                "--shards",
                str(shards),
            )
            variants = [pimq]
            for pf in prefetches:
                pids = []
                for i in range(k):
                    log = out / f"bare-p{pf}-{i}.log"
                    log.write_text("")
                    flags = ["--persistent-replies"] if mode == 2 else []
                    p = spawn(
                        [*bare, "worker", broker.url("bare"), "--prefetch", str(pf), *flags], log
                    )
                    helpers.append(p)
                    wait_for_text(log, "consuming", 1, p)
                    pids.append(p.pid)
                v = Variant(
                    f"bare_p{pf}",
                    f"bare pika loop, {k} consumers, prefetch {pf}",
                    [*bare, "run", broker.url("bare"), str(shards)],
                    None,
                    pids,
                )
                variants.append(v)
                group = [pimq, v]
                if pf == prefetches[-1]:  # the same loop carrying pimq's message properties
                    like = Variant(
                        f"bare_p{pf}_pimqlike",
                        f"bare pika loop, prefetch {pf}, pimq's headers and result size",
                        [*bare, "run", broker.url("bare"), str(shards), "--pimq-like"],
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


# -- 4. worker memory -------------------------------------------------------------
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
            v = pimq_variant(
                "wc", "wc", broker, 0, out, fleet, "wordcount", "--word", WORD, str(text)
            )
            measure(v, broker, None)
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


# -- 6. speedup curve ---------------------------------------------------------------
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
            wc = pimq_variant(
                "wc",
                f"pimq wordcount, {k} workers",
                broker,
                4,
                out,
                fleet,
                "wordcount",
                "--word",
                WORD,
                str(text),
            )
            s_pi = Variant(
                "serial_pi", "one process, pi", [*serial, "pi", str(samples)], runtime_env()
            )
            pi = pimq_variant(
                "pi",
                f"pimq pi, {k} workers",
                broker,
                4,
                out,
                fleet,
                "pi",
                "--samples",
                str(samples),
            )
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


# -- where the time goes ------------------------------------------------------------
def bench_profile(broker: Broker, out: Path, text: Path, k: int, shards: int) -> str:
    from spy import profile_job

    say("\n== profiles (py-spy): word count and no-op shards")
    parts = []
    for name, args, seconds in (
        ("wordcount", ("wordcount", "--word", WORD, str(text)), 8),
        ("noop", ("noop", "--shards", str(shards)), 10),
    ):
        with Fleet(broker, out / f"profile-{name}", [broker.students[5].vhost], k, 1) as fleet:
            v = pimq_variant(name, name, broker, 5, out, fleet, *args)
            measure(v, broker, None)  # warm-up
            parts.append(
                profile_job(name, out, [p.pid for p in fleet.procs], v.cmd, v.env or {}, seconds)
            )
    text_md = "\n".join(parts)
    (out / "profiles.md").write_text(text_md)
    say(text_md)
    return text_md


# -- 5. provisioning ----------------------------------------------------------------
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
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    from plot import plot, text_chart
    from report import figures_markdown, update_results

    if "curve" in results:
        plot(results, BENCH / "speedup.png")
        print(text_chart(results))
    md = figures_markdown(results)
    (out / "figures.md").write_text(md)
    print(md)
    if args.update_results:
        update_results(BENCH / "RESULTS.md", md, results.get("profiles"))
    say(
        f"\nbench done in {results['elapsed_seconds'] / 60:.1f} min; bench/out/results.json, "
        "bench/out/figures.md, bench/speedup.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
