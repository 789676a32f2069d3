"""The teacher's tools on one broker node: ``python -m pimq.teacher ACTION``.

``playbooks/teacher.yml`` (``make stop-job``, ``make purge-dead``) runs it as
root on a broker node, with the admin's password on standard input (one line;
never in argv). It talks to the broker on 127.0.0.1 only: the management API
(plaintext, loopback) to list a student's queues and to lend the admin the
rights it needs, AMQP (plaintext, loopback) to act. Actions:

``jobs``        the student's running jobs: every durable ``pimq.result.*`` queue
                of their vhost (a ``pimq run`` / ``pimq experiment`` job's result
                queue; the exclusive reply queues of ``pimq data`` are not jobs)
``stop``        stop them (``--job ID``: only those): a cancel with reason
                "stopped" on ``pimq.control`` (every worker drops the job's queued
                shards and kills its running ones), then ``{"stopped": job}`` to
                the job's result queue, so its ``pimq run`` exits saying so
``purge-dead``  purge the vhost's ``pimq.dead``, counting what was removed

``--dry-run`` reports what would be done and changes nothing (Ansible's check
mode). The admin acts with its own rights on the vhost (RabbitMQ gives a user
all rights on each vhost it creates through the API, as roles/pimq_students
does); on a vhost where it has none, it is lent the narrowest rights the action
needs (configure nothing, write ``pimq.control`` and ``pimq.results``, or read
``pimq.dead``), removed again when the action is over. Every queue and exchange
name comes from :mod:`pimq.protocol.topology`.

Output: one JSON object on stdout (``vhost``, ``jobs``, ``stopped``, ``purged``,
``changed``); a request that cannot be met (no such vhost, no running job, a job
that is not running) is ``{"error": ...}`` and exit code 2, with nothing changed.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from pimq.protocol import topology
from pimq.protocol.wire import JOB_RE, encode_cancel, encode_stopped

TIMEOUT = 10.0
ACTIONS = ("jobs", "stop", "purge-dead")


class Refused(Exception):
    """The request cannot be met; ``str(exc)`` says why (nothing was changed)."""


@dataclass(frozen=True)
class RunningJob:
    job: str
    #: a controller (``pimq run``) consumes its result queue now
    attached: bool
    #: results waiting in the queue
    messages: int


def running_jobs(rows: Iterable[Any]) -> list[RunningJob]:
    """The running jobs among a vhost's queues (management API rows: ``name``,
    ``durable``, ``exclusive``, ``consumers``, ``messages``), by job id."""
    jobs = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        name = row.get("name")
        if not topology.is_result_queue(name) or row.get("exclusive") or not row.get("durable"):
            continue
        job = str(name)[len(topology.RESULT_PREFIX) :]
        if not JOB_RE.match(job):
            continue
        jobs.append(
            RunningJob(job, int(row.get("consumers") or 0) > 0, int(row.get("messages") or 0))
        )
    return sorted(jobs, key=lambda j: j.job)


def choose(vhost: str, jobs: Sequence[RunningJob], wanted: Sequence[str]) -> list[RunningJob]:
    """The jobs to stop: every running one, or those named (each must be running)."""
    if not jobs:
        raise Refused(f"student {vhost} has no running job")
    if not wanted:
        return list(jobs)
    by_id = {j.job: j for j in jobs}
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        running = ", ".join(by_id)
        raise Refused(
            f"no running job {', '.join(unknown)} of student {vhost} (running: {running})"
        )
    return [by_id[w] for w in dict.fromkeys(wanted)]


def exact(*names: str) -> str:
    """A permission regex matching exactly these resource names."""
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


#: the rights lent to the admin per action (configure, write, read)
RIGHTS: dict[str, dict[str, str]] = {
    "stop": {"configure": "^$", "write": exact(topology.CONTROL, topology.RESULTS), "read": "^$"},
    "purge-dead": {"configure": "^$", "write": "^$", "read": exact(topology.DEAD)},
}


class Api:
    """The management API on this node, as the admin."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base = base.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.auth = f"Basic {token}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", self.auth)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 404, None
            raise Refused(f"the management API answered {exc.code} to {method} {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Refused(f"cannot reach the management API at {self.base} ({reason})") from None


class Broker:
    """One broker node's side of the teacher's tools, for one student vhost."""

    def __init__(self, vhost: str, user: str, password: str, api: str, amqp_port: int) -> None:
        self.vhost, self.user, self.password = vhost, user, password
        self.api = Api(api, user, password)
        self.amqp_port = amqp_port
        self.v = quote(vhost, safe="")

    def check_vhost(self) -> None:
        status, _ = self.api.call("GET", f"/api/vhosts/{self.v}")
        if status == 404:
            raise Refused(f"no vhost {self.vhost} on this broker (is {self.vhost} a student?)")

    def jobs(self) -> list[RunningJob]:
        columns = "name,durable,exclusive,consumers,messages"
        _, rows = self.api.call("GET", f"/api/queues/{self.v}?columns={columns}")
        return running_jobs(rows or [])

    def dead_messages(self) -> int | None:
        """Messages in the vhost's pimq.dead as the queue itself counts them, or
        None if this broker has none (a broker no job ran on). From rabbitmqctl
        (this runs as root on the node), not the management API, whose figure lags
        by its statistics interval and which RabbitMQ 4 may not collect at all."""
        argv = ["rabbitmqctl", "-q", "list_queues", "-p", self.vhost, "name", "messages"]
        try:
            out = subprocess.run(
                [*argv, "--formatter", "json"],
                capture_output=True, text=True, timeout=6 * TIMEOUT, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Refused(f"cannot count {topology.DEAD} with rabbitmqctl ({exc})") from None
        if out.returncode != 0:
            raise Refused(f"rabbitmqctl list_queues failed: {out.stderr.strip()[-300:]}")
        rows = json.loads(out.stdout or "[]")
        return next((int(r["messages"]) for r in rows if r.get("name") == topology.DEAD), None)

    def lend(self, action: str) -> bool:
        """Lend the admin the action's rights on the vhost; False if it already had
        rights there (then they are used as they are, and left alone)."""
        path = f"/api/permissions/{self.v}/{quote(self.user, safe='')}"
        status, _ = self.api.call("GET", path)
        if status != 404:
            return False
        self.api.call("PUT", path, {"vhost": self.vhost, "user": self.user, **RIGHTS[action]})
        return True

    def take_back(self) -> None:
        self.api.call("DELETE", f"/api/permissions/{self.v}/{quote(self.user, safe='')}")

    def channel(self) -> Any:
        import pika

        from pimq.protocol.amqp import parameters

        params = parameters(
            "127.0.0.1", self.amqp_port, self.vhost, self.user, self.password, name="pimq teacher"
        )
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        ch.confirm_delivery()
        return conn, ch

    def act(self, action: str, run: Any) -> Any:
        """``run(channel)`` with the action's rights lent for the time it takes."""
        lent = self.lend(action)
        try:
            conn, ch = self.channel()
            try:
                return run(ch)
            finally:
                conn.close()
        finally:
            if lent:
                self.take_back()

    def stop(self, jobs: Sequence[RunningJob]) -> list[str]:
        """Cancel each job for the workers, then tell its controller; the jobs told."""

        def run(ch: Any) -> list[str]:
            import pika.exceptions as px

            told = []
            for j in jobs:
                ch.basic_publish(
                    topology.CONTROL,
                    "",
                    encode_cancel(j.job, "stopped"),
                    topology.CONTROL_PROPS,
                )
                try:
                    ch.basic_publish(
                        topology.RESULTS,
                        topology.result_queue(j.job),
                        encode_stopped(j.job),
                        topology.RESULT_PROPS,
                        mandatory=True,
                    )
                    told.append(j.job)
                except px.UnroutableError:
                    pass  # its result queue went away meanwhile: the job just ended
            return told

        return self.act("stop", run)

    def purge_dead(self) -> int:
        if self.dead_messages() is None:
            return 0
        return self.act("purge-dead", lambda ch: ch.queue_purge(topology.DEAD).method.message_count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pimq.teacher", description=__doc__)
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--vhost", required=True, help="the student (their vhost)")
    parser.add_argument("--job", action="append", default=[], help="stop only this job")
    parser.add_argument("--user", default="pimq-admin", help="the admin (password on stdin)")
    parser.add_argument("--api", default="http://127.0.0.1:15672")
    parser.add_argument("--amqp-port", type=int, default=5672)
    parser.add_argument("--dry-run", action="store_true", help="change nothing, say what")
    args = parser.parse_args(argv)
    password = sys.stdin.readline().rstrip("\n")
    broker = Broker(args.vhost, args.user, password, args.api, args.amqp_port)
    out: dict[str, Any] = {"vhost": args.vhost, "changed": False}
    try:
        broker.check_vhost()
        if args.action in ("jobs", "stop"):
            jobs = broker.jobs()
            out["jobs"] = [asdict(j) for j in jobs]
            if args.action == "stop":
                chosen = choose(args.vhost, jobs, args.job)
                out["stopping"] = [j.job for j in chosen]
                if not args.dry_run:
                    out["stopped"] = broker.stop(chosen)
                    out["changed"] = True
        else:
            if args.dry_run:
                out["purged"] = broker.dead_messages() or 0
            else:
                out["purged"] = broker.purge_dead()
                out["changed"] = out["purged"] > 0
    except Refused as exc:
        json.dump({"vhost": args.vhost, "error": str(exc), "changed": False}, sys.stdout)
        sys.stdout.write("\n")
        return 2
    except Exception as exc:  # the broker refused or went away mid-action
        error = f"{type(exc).__name__}: {exc}"
        json.dump({"vhost": args.vhost, "error": error, "changed": True}, sys.stdout)
        sys.stdout.write("\n")
        return 1
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
