"""``pimq run KIND ...``: parse the kind's options, run the job, print the result."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pimq import jobs
from pimq.client import record
from pimq.client.controller import QUEUE_WAIT, Controller, JobOutcome
from pimq.client.data import as_ranges, dataset_in
from pimq.client.history import Recorder
from pimq.client.module import StudentModule, load_module, looks_like_path
from pimq.client.route import PiChoice, parse_pis
from pimq.client.state import track_job, untrack_job
from pimq.config import load_student_config, student_config_path
from pimq.errors import JobFailed, PimqError, UsageError
from pimq.protocol.wire import H_CODE, H_SHARD_TIMEOUT, MODULE_KIND

# More shards than this only adds overhead (and takes minutes to publish).
MAX_SHARDS = 10_000


def default_shards(consumers: int) -> int:
    """Four shards per worker serving the vhost (each runs a pool of processes)."""
    return max(4, 4 * consumers)


def kind_parser(kind: str, module: Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"pimq run {kind}", description=getattr(module, "HELP", None)
    )
    add = getattr(module, "add_arguments", None)
    if add:
        add(parser)
    common = parser.add_argument_group("job options")
    common.add_argument("--shards", type=int, help="number of shards (default: 4 per worker)")
    common.add_argument("--timeout", type=float, help="give up after this many seconds")
    common.add_argument(
        "--pis",
        metavar="N|PI,PI",
        help="run on N Pis (any, the least busy) or on the Pis named (--pis pi1,pi2); "
        "the others take none of its shards (default: every Pi)",
    )
    common.add_argument(
        "--shard-timeout",
        type=float,
        metavar="S",
        help="end a shard that runs longer than S seconds (at most the room's limit)",
    )
    common.add_argument(
        "--queue-wait",
        type=float,
        metavar="S",
        default=QUEUE_WAIT,
        help="while your task queue is at the room's cap, wait up to S seconds for room "
        f"before giving up (default {QUEUE_WAIT:g})",
    )
    common.add_argument(
        "--local", action="store_true", help="run every shard here, in-process (debugging)"
    )
    common.add_argument("--json", action="store_true", help="print the outcome as JSON")
    common.add_argument("--config", help="student config file")
    common.add_argument("--host", help="broker host (overrides the config file)")
    return parser


def load_kind(kind: str) -> Any:
    try:
        return jobs.load(kind)
    except jobs.UnknownKind:
        raise UsageError(
            f"unknown job kind {kind!r} (available: {', '.join(jobs.available())})"
        ) from None


def summary(kind: str, job_params: dict, outcome: JobOutcome, result: Any) -> dict[str, Any]:
    return {
        "job": outcome.job,
        "kind": kind,
        "params": job_params,
        "result": result,
        "shards": outcome.count,
        "wall_seconds": round(outcome.wall, 6),
        "compute_seconds": round(outcome.compute, 6),
        "parallelism": round(outcome.parallelism, 3),
        "workers": dict(sorted(outcome.per_worker.items())),
        "duplicates": outcome.duplicates,
        "refused": outcome.refused,
    }


def run_local(module: Any, bodies: Sequence[bytes], job_params: dict) -> list[Any]:
    """``--local``: every shard in this process, in order; a raising ``run()``
    fails the job with its traceback, like a shard on a Pi."""
    values = []
    for index in range(len(bodies)):
        try:
            values.append(module.run(bodies[index], job_params))
        except Exception as exc:
            import traceback

            tb = "".join(traceback.format_exception(exc)).rstrip()
            raise JobFailed(f"shard {index} failed (--local): {tb}") from None
    return values


def run_job(kind: str, rest: list[str]) -> int:
    """``pimq run KIND REST...`` (or ``pimq run ./module.py REST...``): the exit code."""
    student: StudentModule | None = None
    if looks_like_path(kind):
        student = load_module(kind)
        module: Any = student.module
    else:
        module = load_kind(kind)
    args = kind_parser(kind, module).parse_args(rest)
    if args.shards is not None and not 1 <= args.shards <= MAX_SHARDS:
        raise UsageError(f"--shards must be between 1 and {MAX_SHARDS}")
    pis = parse_pis(args.pis) if args.pis is not None else None
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.queue_wait <= 0:
        raise UsageError("--queue-wait must be positive")
    if args.shard_timeout is not None and args.shard_timeout <= 0:
        raise UsageError("--shard-timeout must be positive")
    try:
        job_params = jobs.params(module, args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    params_json = json.dumps(job_params, sort_keys=True, separators=(",", ":"))

    used: list[str] = []  # the dataset whose ranges the shards carry, if any

    def make_bodies(consumers: int) -> Sequence[bytes]:
        shards = args.shards or default_shards(consumers)
        try:
            bodies = module.split(args, job_params, shards)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not isinstance(bodies, Sequence):  # a generator, say
            bodies = list(bodies)
        # (--local: no route, and no dataset looked up)
        ranges = None if args.local else as_ranges(bodies, controller.router, digest)
        if ranges is not None:
            bodies = ranges  # the Pis read their own copy
            used.append(digest)
        return bodies if len(bodies) else [b""]

    if args.local:
        bodies = make_bodies(1)
        values = run_local(module, bodies, job_params)
        result = module.join(values, job_params)
        if args.json:
            json.dump({"kind": kind, "params": job_params, "result": result}, sys.stdout)
            sys.stdout.write("\n")
        else:
            print(jobs.render(module, result, job_params))
        return 0
    cfg = load_student_config(student_config_path(args.config), args.host)
    # a file already put (pimq data put): routed to the Pis that hold it
    digest = dataset_in(rest)
    if digest:
        pis = PiChoice(holders=True, prefer=digest) if pis is None else replace(pis, prefer=digest)
    headers: dict[str, Any] = {}
    if args.shard_timeout:
        headers[H_SHARD_TIMEOUT] = max(1, round(args.shard_timeout * 1000))
    code = None
    wire_kind = kind
    if student is not None:
        wire_kind = MODULE_KIND
        headers[H_CODE] = student.digest
        code = (student.digest, student.filename, student.source)
    controller = Controller(
        cfg,
        wire_kind,
        params_json,
        make_bodies,
        args.timeout,
        progress=not args.json,
        headers=headers,
        code=code,
        queue_wait=args.queue_wait,
        pis=pis,
    )
    recorder = Recorder()
    recorder.start(
        controller.job, kind, list(rest), job_params, cfg.vhost, f"{cfg.host}:{cfg.port}"
    )
    track_job(controller.job, kind)
    started = time.monotonic()
    try:
        outcome = controller.run()
        values = [outcome.results[i].value for i in range(outcome.count)]
        result = module.join(values, job_params)
    except BaseException as exc:
        exit_code = exc.exit_code if isinstance(exc, PimqError) else 130
        if not isinstance(exc, (PimqError, KeyboardInterrupt)):
            exit_code = 1  # the kind's join raised: the job failed
        recorder.finish(
            controller.job,
            exit_code,
            error=str(exc) or type(exc).__name__,
            shards=controller.count,
            results=controller.results,
            wall=time.monotonic() - started,
            duplicates=controller.duplicates,
        )
        record.job_ended(
            cfg,
            controller.job,
            kind,
            {r.worker for r in controller.results.values() if r.worker},
            controller.count,
            time.monotonic() - started,
            exit_code,
        )
        raise
    finally:
        untrack_job(controller.job)
    recorder.finish(
        controller.job,
        0,
        shards=outcome.count,
        results=outcome.results,
        wall=outcome.wall,
        duplicates=outcome.duplicates,
        result=result,
        has_result=True,
    )
    record.job_ended(cfg, outcome.job, kind, outcome.per_worker, outcome.count, outcome.wall, 0)
    doc = summary(kind, job_params, outcome, result)
    doc["dataset"] = used[0] if used else None
    if used:
        sent = len(getattr(controller.bodies, "full", ()))
        doc["shards_sent_with_bytes"] = sent
    if args.json:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(jobs.render(module, result, job_params), flush=True)  # before the timings (stderr)
    workers = ", ".join(f"{w} {n}" for w, n in doc["workers"].items()) or "-"
    print(
        f"job {outcome.job}: {outcome.count} shard(s) in {outcome.wall:.2f} s, "
        f"shard compute {outcome.compute:.2f} s, parallelism {outcome.parallelism:.2f}x "
        "(compute / wall, not a speedup)",
        file=sys.stderr,
    )
    print(f"shards per worker: {workers}", file=sys.stderr)
    if outcome.refused:
        print(
            f"{outcome.refused} shard publish(es) refused by the broker (your task queue "
            "was at the room's cap) and sent again: none was lost",
            file=sys.stderr,
        )
    if outcome.duplicates:
        print(
            f"{outcome.duplicates} duplicate result(s) dropped (shards redelivered after "
            "a worker or connection was lost; each shard is counted once)",
            file=sys.stderr,
        )
    return 0
