"""The ``pimq`` command: a thin argparse layer over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pimq import __version__, jobs
from pimq.config import (
    WORKER_CONFIG,
    StudentConfig,
    load_student_config,
    load_worker_config,
    student_config_path,
)
from pimq.errors import PimqError
from pimq.protocol.session import LAB_QUEUE_WAIT

EPILOG = """exit codes: 0 success, 1 job failed, 2 usage/input/config error,
3 broker unreachable or credentials refused, 4 --timeout elapsed, 130 interrupted"""


def _student(args: argparse.Namespace) -> StudentConfig:
    return load_student_config(student_config_path(args.config), args.host)


def cmd_worker(args: argparse.Namespace) -> int:
    from pimq.worker.daemon import Worker

    cfg = load_worker_config(args.config)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    return Worker(cfg, drain_timeout=args.drain_timeout, log_shards=not args.quiet).run()


def cmd_run(args: argparse.Namespace) -> int:
    from pimq.client.run import run_job

    if args.kind in (None, "-h", "--help"):
        print("usage: pimq run KIND [options]   (pimq run KIND --help for its options)\n")
        print("job kinds:")
        for kind in jobs.available():
            try:
                help_text = getattr(jobs.load(kind), "HELP", "")
            except Exception:
                help_text = "(cannot be loaded)"
            print(f"  {kind:<12} {help_text}")
        return 0 if args.kind else 2
    return run_job(args.kind, args.rest)


def cmd_data(args: argparse.Namespace) -> int:
    from pimq.client import data

    cfg = _student(args)
    if args.verb == "put":
        return data.put(cfg, args.file, args.name, progress=not args.quiet)
    if args.verb == "list":
        return data.listing(cfg, args.json)
    return data.remove(cfg, args.name)


def cmd_experiment(args: argparse.Namespace) -> int:
    from pimq.client.experiment import run_experiment

    if args.kind in (None, "-h", "--help"):
        print(
            "usage: pimq experiment KIND ARGS --upto N [--repeats R] [--png FILE] [--json]\n\n"
            "The same job on 1, 2, ... N Pis, R times each (3), against one process on\n"
            "the head: a table of wall times and speedups, and a PNG plot (FILE, default\n"
            "experiment-KIND.png) when matplotlib is installed. ARGS are the kind's\n"
            "(pimq run KIND --help); a file put with pimq data put is read on the Pis."
        )
        return 0 if args.kind else 2
    return run_experiment(args.kind, args.rest)


def cmd_status(args: argparse.Namespace) -> int:
    from pimq.client.status import status

    return status(_student(args), args.json)


def cmd_history(args: argparse.Namespace) -> int:
    from pimq.client.results import show_history

    if args.limit is not None and args.limit < 1:
        raise PimqError("--limit must be at least 1")
    return show_history(None if args.all else args.limit, args.json)


def cmd_result(args: argparse.Namespace) -> int:
    from pimq.client.results import show_result

    return show_result(args.job, args.json)


def cmd_env(args: argparse.Namespace) -> int:
    from pimq.client.connect import env

    for line in env(args.config, args.host, args.password, sys.stdout.isatty()):
        print(line)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from pimq.client.sample import sample

    return sample(args.name, args.copies)


def cmd_send(args: argparse.Namespace) -> int:
    from pimq.lab.verbs import send

    return send(
        _student(args), args.queue, args.message, args.durable, args.heartbeat, args.queue_wait
    )


def cmd_receive(args: argparse.Namespace) -> int:
    from pimq.lab.verbs import receive

    return receive(
        _student(args), args.queue, args.count, args.timeout, args.durable, args.heartbeat
    )


def cmd_publish(args: argparse.Namespace) -> int:
    from pimq.lab.verbs import publish

    return publish(
        _student(args),
        args.exchange,
        args.message,
        args.routing_key,
        args.type,
        args.heartbeat,
        args.queue_wait,
    )


def cmd_subscribe(args: argparse.Namespace) -> int:
    from pimq.lab.verbs import subscribe

    return subscribe(
        _student(args),
        args.exchange,
        args.count,
        args.timeout,
        args.bind,
        args.type,
        args.heartbeat,
    )


def cmd_queue(args: argparse.Namespace) -> int:
    from pimq.lab.verbs import queue_admin

    return queue_admin(_student(args), args.action, args.names, args.heartbeat)


def cmd_rpc(args: argparse.Namespace) -> int:
    from pimq.lab.verbs import rpc_call, rpc_serve

    if args.role == "serve":
        if args.requests:
            raise PimqError("pimq rpc serve takes no requests (pimq rpc call QUEUE REQUEST...)")
        return rpc_serve(
            _student(args), args.queue, args.function, args.count, args.timeout, args.heartbeat
        )
    if not args.requests:
        raise PimqError("pimq rpc call needs at least one REQUEST")
    timeout = 30.0 if args.timeout is None else args.timeout
    return rpc_call(
        _student(args), args.queue, args.requests, timeout, args.heartbeat, args.queue_wait
    )


def cmd_lab_worker(args: argparse.Namespace) -> int:
    from pimq.lab.verbs import lab_worker

    return lab_worker(
        _student(args),
        args.queue,
        args.lose_every,
        args.acknowledge,
        args.delay_per_char,
        args.prefetch,
        args.count,
        args.timeout,
        args.durable,
        args.heartbeat,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pimq", description="Sharded jobs on the classroom's RabbitMQ.", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"pimq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    student = argparse.ArgumentParser(add_help=False)
    student.add_argument(
        "--config", help="config file (default $PIMQ_CONFIG or ~/.config/pimq/config.yaml)"
    )
    student.add_argument("--host", help="broker host, e.g. a buddy's Pi (overrides the config)")
    student.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="S",
        help="AMQP heartbeat in seconds, 0 = none (30)",
    )
    durability = argparse.ArgumentParser(add_help=False)
    group = durability.add_mutually_exclusive_group()
    group.add_argument(
        "--durable",
        dest="durable",
        action="store_true",
        default=True,
        help="declare a new queue durable: it survives a broker restart (default)",
    )
    group.add_argument(
        "--transient",
        dest="durable",
        action="store_false",
        help="declare a new queue transient, its messages too: a broker restart loses them "
        "(where the broker permits it: RabbitMQ 4 deprecates it, and refuses it "
        "where its config denies transient_nonexcl_queues)",
    )
    exchange_type = argparse.ArgumentParser(add_help=False)
    exchange_type.add_argument(
        "--type",
        choices=["fanout", "direct", "topic"],
        help="type of a new exchange (default: topic with a routing key, else fanout)",
    )
    publishing = argparse.ArgumentParser(add_help=False)
    publishing.add_argument(
        "--queue-wait",
        type=float,
        default=LAB_QUEUE_WAIT,
        metavar="S",
        help="when the broker refuses the message (a queue at the room's cap), "
        f"try again for up to S seconds ({LAB_QUEUE_WAIT:g})",
    )
    limits = argparse.ArgumentParser(add_help=False)
    limits.add_argument("--count", type=int, help="stop after this many messages")
    limits.add_argument("--timeout", type=float, help="stop after this many idle seconds")

    p = sub.add_parser("worker", help="run the worker service (pimq-worker.service)")
    p.add_argument("--config", default=WORKER_CONFIG, help=f"worker config ({WORKER_CONFIG})")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds to let running shards finish (30)",
    )
    p.add_argument("--quiet", action="store_true", help="no log line per shard")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "run", help="run a sharded job (pimq run KIND --help)", add_help=False, epilog=EPILOG
    )
    p.add_argument("kind", nargs="?", metavar="KIND")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "experiment",
        help="the same job on 1..N Pis against one process on the head (pimq experiment --help)",
        add_help=False,
        epilog=EPILOG,
    )
    p.add_argument("kind", nargs="?")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser(
        "data",
        help="your datasets on the Pis: put once, then pimq run reads them there",
        description="Ship a file to every Pi that serves you once (checksummed, kept in "
        "your own store on each Pi, within your quota); pimq run over that same file "
        "then sends only byte ranges.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="put|list|rm")
    v = verbs.add_parser("put", parents=[student], help="copy FILE to every Pi serving you")
    v.add_argument("file", metavar="FILE")
    v.add_argument("--name", help="its name in pimq data list (default: the file's name)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_data)
    v = verbs.add_parser("list", parents=[student], help="your datasets and the Pis holding them")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_data)
    v = verbs.add_parser("rm", parents=[student], help="remove a dataset from every Pi")
    v.add_argument("name", metavar="NAME", help="its name or checksum (pimq data list)")
    v.set_defaults(func=cmd_data)

    p = sub.add_parser("status", parents=[student], help="queues and workers of your vhost")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "env",
        parents=[student],
        help="shell exports for your own scripts (no password unless --password)",
        description='Prints export lines for your shell: eval "$(pimq env)". In Python, '
        "pimq.connect() needs none of them.",
    )
    p.add_argument(
        "--password",
        action="store_true",
        help='add PIMQ_PASSWORD and AMQP_URL (only into a pipe: eval "$(pimq env --password)")',
    )
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("history", help="your past jobs, newest first")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show N jobs (20)")
    p.add_argument("--all", action="store_true", help="show every job kept")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("result", help="the result and timings of a past job, again")
    p.add_argument("job", metavar="JOB", help="a job id (or a unique prefix of it), or 'last'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_result)

    p = sub.add_parser(
        "sample",
        help="the course's sample data: pimq sample shakespeare --copies 40 > corpus.txt",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a sample (none: list them)")
    p.add_argument("--copies", type=int, default=1, metavar="N", help="write it N times over (1)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "send", parents=[student, durability, publishing], help="send MESSAGE to QUEUE"
    )
    p.add_argument("queue")
    p.add_argument("message")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "receive", parents=[student, limits, durability], help="print messages of QUEUE"
    )
    p.add_argument("queue")
    p.set_defaults(func=cmd_receive)

    p = sub.add_parser(
        "publish", parents=[student, exchange_type, publishing], help="publish MESSAGE to EXCHANGE"
    )
    p.add_argument("exchange")
    p.add_argument("message")
    p.add_argument(
        "--routing-key", default="", metavar="KEY", help="routing key, e.g. kern.critical"
    )
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser(
        "subscribe",
        parents=[student, limits, exchange_type],
        help="print what is published to EXCHANGE",
    )
    p.add_argument("exchange")
    p.add_argument(
        "--bind",
        action="append",
        metavar="KEY",
        help="bind with this key (topic: * one word, # any words); repeatable",
    )
    p.set_defaults(func=cmd_subscribe)

    p = sub.add_parser("queue", parents=[student], help="list, purge or delete queues")
    p.add_argument("action", choices=["purge", "delete", "list"])
    p.add_argument("names", nargs="*", metavar="QUEUE")
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser(
        "rpc",
        parents=[student, limits, publishing],
        help="request-reply: pimq rpc serve QUEUE | pimq rpc call QUEUE REQUEST...",
    )
    p.add_argument("role", choices=["serve", "call"])
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("requests", nargs="*", metavar="REQUEST")
    p.add_argument(
        "--function",
        choices=["fib", "upper", "echo"],
        default="fib",
        help="what serve computes (fib)",
    )
    p.set_defaults(func=cmd_rpc)

    p = sub.add_parser(
        "lab-worker",
        parents=[student, limits, durability],
        help="the lab's lossy worker (acks and fair dispatch)",
    )
    p.add_argument("queue")
    p.add_argument(
        "--lose-every",
        type=int,
        default=0,
        metavar="N",
        help="crash while working on every Nth message",
    )
    p.add_argument("--acknowledge", action="store_true", help="ack after the work (else auto-ack)")
    p.add_argument(
        "--delay-per-char",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds of work per character",
    )
    p.add_argument(
        "--prefetch", type=int, default=0, metavar="N", help="basic.qos prefetch (0 = unlimited)"
    )
    p.set_defaults(func=cmd_lab_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PimqError as exc:
        print(f"pimq: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pimq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
