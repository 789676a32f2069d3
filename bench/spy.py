"""Where the time goes: py-spy profiles of a pimq job, controller and workers at once.

``run.py --profile`` calls :func:`profile_job` for the word count and the no-op
job. py-spy samples every process (the controller, each ``pimq worker`` and
its shard processes) at 250 Hz without slowing it much; idle samples (waiting
in ``epoll``/``select``/``recv``) are left out, so the tables show CPU time.
The raw stacks stay in ``bench/out/profile-<name>-*.raw`` (flamegraph input).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

from procs import _live

PY_SPY = Path(__file__).resolve().parents[1] / ".venv-bench" / "bin" / "py-spy"
RATE = 250
IDLE = re.compile(
    r"\b(poll|select|epoll|wait|_wait_for_tstate_lock|recv_into|sigwait)\b|"
    r"\(selectors\.py|\(threading\.py|Connection\._recv \(multiprocessing"
)


def _spy(args: list[str], out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "-r",
            str(RATE),
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _live.append(proc)
    return proc


def profile_job(
    name: str,
    out: Path,
    worker_pids: list[int],
    client: list[str],
    env: dict[str, str],
    seconds: float,
) -> str:
    """Profile the workers for ``seconds`` while ``client`` runs under py-spy too."""
    spies = []
    for i, pid in enumerate(worker_pids):
        raw = out / f"profile-{name}-worker{i}.raw"
        spies.append(
            (
                f"worker{i}",
                raw,
                _spy(["--subprocesses", "-d", str(int(seconds)), "-p", str(pid)], raw),
            )
        )
    raw = out / f"profile-{name}-controller.raw"
    ctl = subprocess.Popen(
        [str(PY_SPY), "record", "-r", str(RATE), "-f", "raw", "-o", str(raw), "--", *client],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ctl.wait(timeout=seconds + 120)
    spies.append(("controller", raw, ctl))
    for _, _, p in spies:
        try:
            p.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            p.kill()
        if p in _live:
            _live.remove(p)
    return summarize(name, [(role, raw) for role, raw, _ in spies])


def summarize(name: str, raws: list[tuple[str, Path]], top: int = 12) -> str:
    lines = [f"### Profile: {name} (py-spy, {RATE} Hz, CPU samples only)", ""]
    per_process: Counter[str] = Counter()
    per_leaf: dict[str, Counter[str]] = {}
    for role, raw in raws:
        if not raw.exists():
            lines.append(f"- {role}: no profile ({raw.name} missing)")
            continue
        for line in raw.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            leaf = frames[-1]
            if IDLE.search(leaf):
                continue
            child = next((f for f in frames[1:3] if f.startswith("process ")), None)
            where = (
                f"{role} shard process"
                if child
                else (f"{role}" if "Thread" not in "".join(frames[1:2]) else f"{role} thread")
            )
            per_process[where] += int(count)
            short = re.sub(r"\s*\(.*?([^/]+/[^/]+\.py):(\d+)\)", r" (\1:\2)", leaf)
            per_leaf.setdefault(where, Counter())[short] += int(count)
    total = sum(per_process.values()) or 1
    lines += [
        "| process | CPU samples | share | hottest functions (self samples) |",
        "|---|---:|---:|---|",
    ]
    for where, n in per_process.most_common():
        hot = "; ".join(f"{f} {c}" for f, c in per_leaf[where].most_common(4))
        lines.append(f"| {where} | {n} | {100 * n / total:.0f} % | {hot} |")
    lines.append("")
    for where, _n in per_process.most_common(3):
        lines += [f"Top of {where}:", "", "```"]
        lines += [f"{c:6d}  {f}" for f, c in per_leaf[where].most_common(top)]
        lines += ["```", ""]
    return "\n".join(lines)
