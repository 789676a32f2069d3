"""``pimq experiment KIND ARGS --upto N``: does splitting over more Pis help?

The seed-004 exercise in one command: the same job on 1, 2, ... N Pis
(``--pis n``, the least busy n), ``--repeats`` times each, against the same
job in one process on the head (the kind's own ``split``/``run``/``join``,
no broker: what pimq's parallelism is up against). Every run's result must
equal the head's. Printed as a table of wall times and speedups (head's
median ÷ the Pis' median: a real speedup, both timed here, wall clock), and
drawn as a PNG with matplotlib when it is importable (Debian's
python3-matplotlib on the head).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pimq import jobs
from pimq.client import record
from pimq.client.controller import Controller, new_job_id
from pimq.client.data import Replies, as_ranges, dataset_in
from pimq.client.route import PiChoice
from pimq.client.run import MAX_SHARDS, kind_parser, load_kind
from pimq.config import load_student_config, student_config_path
from pimq.errors import JobFailed, UsageError

MAX_UPTO = 64


@dataclass
class Row:
    label: str
    pis: int  # 0: one process on the head
    walls: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def best(self) -> float:
        return min(self.walls)


def experiment_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--upto", type=int, required=True, metavar="N")
    p.add_argument("--repeats", type=int, default=3, metavar="R")
    p.add_argument("--png", metavar="FILE")
    p.add_argument("--json", action="store_true", dest="exp_json")
    return p


def run_experiment(kind: str, rest: list[str]) -> int:
    if kind.endswith(".py") or "/" in kind:
        raise UsageError("pimq experiment runs the room's job kinds (pimq run --help lists them)")
    module = load_kind(kind)
    try:
        exp, rest = experiment_parser().parse_known_args(rest)
    except SystemExit:
        raise UsageError(
            "usage: pimq experiment KIND ARGS --upto N [--repeats R] [--png FILE] [--json]"
        ) from None
    if not 1 <= exp.upto <= MAX_UPTO:
        raise UsageError(f"--upto must be between 1 and {MAX_UPTO}")
    if not 1 <= exp.repeats <= 20:
        raise UsageError("--repeats must be between 1 and 20")
    args = kind_parser(kind, module).parse_args(rest)
    if args.pis is not None:
        raise UsageError("pimq experiment chooses the Pis itself (--upto N): leave out --pis")
    shards = args.shards or 4 * exp.upto
    if not 1 <= shards <= MAX_SHARDS:
        raise UsageError(f"--shards must be between 1 and {MAX_SHARDS}")
    try:
        job_params = jobs.params(module, args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    params_json = json.dumps(job_params, sort_keys=True, separators=(",", ":"))
    cfg = load_student_config(student_config_path(args.config), args.host)
    digest = dataset_in(rest)

    def split() -> Sequence[bytes]:
        try:
            bodies = module.split(args, job_params, shards)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return bodies if isinstance(bodies, Sequence) else list(bodies)

    def one_run(n: int) -> Any:
        """The job on ``n`` Pis (ranges only where they hold the dataset)."""
        holder: list[Controller] = []

        def make_bodies(_consumers: int) -> Sequence[bytes]:
            bodies = split()
            return as_ranges(bodies, holder[0].router, digest) or bodies

        choice = PiChoice(count=n, prefer=digest or "")
        holder.append(
            Controller(
                cfg, kind, params_json, make_bodies, args.timeout, progress=False, pis=choice
            )
        )
        return holder[0].run()

    replies = Replies.open(cfg, "pimq experiment")
    try:
        room = replies.rollcall()
    finally:
        replies.close()
    if len(room) < exp.upto:
        raise UsageError(
            f"--upto {exp.upto}: only {len(room)} Pi(s) serve vhost {cfg.vhost!r} now "
            f"(serving: {', '.join(sorted(room)) or 'none'})"
        )
    say = (lambda text: None) if exp.exp_json else (lambda text: print(text, file=sys.stderr))
    head = Row("head", 0)
    expected: Any = None
    for _ in range(exp.repeats):
        start = time.perf_counter()
        bodies = split()
        expected = module.join(
            [module.run(bodies[i], job_params) for i in range(len(bodies))], job_params
        )
        head.walls.append(time.perf_counter() - start)
    say(f"pimq: one process on the head: {head.median:.3f} s (median of {exp.repeats})")
    rows = [head]
    job = new_job_id()  # the experiment's one entry in the teacher's record
    used: set[str] = set()  # every Pi that ran a shard of it
    started = time.monotonic()
    exit_code = 130
    try:
        for n in range(1, exp.upto + 1):
            row = Row(f"{n} Pi" + ("s" if n > 1 else ""), n)
            for r in range(exp.repeats):
                outcome = one_run(n)
                used.update(outcome.per_worker)
                values = [outcome.results[i].value for i in range(outcome.count)]
                if module.join(values, job_params) != expected:
                    raise JobFailed(f"the run on {n} Pi(s) gave another result than the head's")
                row.walls.append(outcome.wall)
                on = ", ".join(sorted(outcome.per_worker))
                say(f"pimq: {row.label}, run {r + 1}: {outcome.wall:.3f} s on {on}")
            rows.append(row)
        exit_code = 0
    except Exception as exc:
        exit_code = getattr(exc, "exit_code", 1)
        raise
    finally:
        runs = sum(len(r.walls) for r in rows[1:])
        record.job_ended(
            cfg,
            job,
            kind,
            used,
            shards * runs,
            time.monotonic() - started,
            exit_code,
            # the speedup on the most Pis (head's median / theirs), when measured
            speedup=head.median / rows[-1].median if exit_code == 0 else None,
        )
    doc = {
        "job": job,  # its id in the teacher's record
        "kind": kind,
        "params": job_params,
        "shards": shards,
        "dataset": digest,
        "rows": [
            {
                "pis": row.pis,
                "walls": [round(w, 6) for w in row.walls],
                "median": round(row.median, 6),
                "speedup": round(head.median / row.median, 3),
            }
            for row in rows
        ],
    }
    png = exp.png or f"experiment-{kind}.png"
    drawn = draw(rows, head.median, png, f"pimq experiment {kind} ({shards} shards)")
    doc["png"] = png if drawn else None
    if exp.exp_json:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(
        f"{kind}: {shards} shards, {exp.repeats} run(s) each"
        + (" (dataset on the Pis)" if digest else "")
    )
    print(f"{'':<8} {'median s':>9} {'best s':>9} {'speedup':>8}")
    for row in rows:
        print(
            f"{row.label:<8} {row.median:>9.3f} {row.best:>9.3f} {head.median / row.median:>7.2f}x"
        )
    print("speedup: the head's median wall time / this row's (one process on the head = 1.00x)")
    if drawn:
        print(f"plot: {png}")
    else:
        print("plot: not drawn (matplotlib is not installed here: apt install python3-matplotlib)")
    return 0


def draw(rows: list[Row], head: float, path: str, title: str) -> bool:
    """The speedup plot as a PNG; False if matplotlib cannot be imported."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pis = [r.pis for r in rows if r.pis]
    speedups = [head / r.median for r in rows if r.pis]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(pis, speedups, "o-", label="pimq on n Pis")
    ax.plot(pis, pis, ":", color="grey", label="ideal (n x)")
    ax.axhline(1.0, color="red", linewidth=0.8, label="one process on the head")
    ax.set_xlabel("Pis")
    ax.set_ylabel("speedup over one process on the head")
    ax.set_xticks(pis)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
