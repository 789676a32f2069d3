"""The teacher's record of the class's jobs: one summary per job, for the page.

At the end of every ``pimq run`` / ``pimq experiment`` job the student's
client publishes one small JSON document (no arguments, no results: only
what the teacher's page shows) to the exchange ``pimq.record`` of the vhost
``pimq-teacher`` on the head broker, with the AMQP ``user_id`` property set to
the student's user: RabbitMQ refuses a message whose ``user_id`` is not the
connection's user, so a record names its real sender. Students may only
write to that exchange there (no configure, no read rights); the page's own
user reads the queue behind it (``pimq.record``, bound by the page).

Where to send it comes from ``/etc/pimq/record.yaml`` on the head (written by
the ``pimq_page`` role: ``host``, ``port``, ``vhost``, ``exchange``); without
that file (a room without the page, a student's own machine) nothing is sent.
Publishing is best effort: it never fails a job and never takes more than
:data:`DEADLINE` seconds (it runs in a daemon thread that is given up after
that).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pimq.errors import Interrupted, JobStopped

RECORD_CONFIG = "/etc/pimq/record.yaml"
RECORD_VHOST = "pimq-teacher"
RECORD_EXCHANGE = "pimq.record"
#: seconds a job's end may wait for its record to be published, at most
DEADLINE = 1.0
#: what a record may say a job ended as
OUTCOMES = ("done", "failed", "stopped")
#: the largest record body the page accepts (a record is ~200 bytes)
MAX_BODY = 4096
#: the longest job id, kind or Pi name kept, and the most Pis listed
MAX_NAME = 64
MAX_PIS = 256
FIELDS = (
    "job",
    "student",
    "kind",
    "pis",
    "shards",
    "wall_seconds",
    "speedup",
    "outcome",
    "finished",
)


class BadRecord(ValueError):
    """A message on the record queue that is no valid record."""


def outcome_of(exit_code: int) -> str:
    """A job's exit code as a record's outcome: 0 done; stopped by Ctrl-C or by
    the teacher (``make stop-job``) stopped; anything else failed."""
    if exit_code == 0:
        return "done"
    if exit_code in (Interrupted.exit_code, JobStopped.exit_code):
        return "stopped"
    return "failed"


def make_record(
    job: str,
    student: str,
    kind: str,
    pis: Iterable[str],
    shards: int,
    wall_seconds: float,
    outcome: str,
    speedup: float | None = None,
    finished: float | None = None,
) -> dict[str, Any]:
    """One job's record, exactly :data:`FIELDS`."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    return {
        "job": str(job)[:MAX_NAME],
        "student": str(student),
        "kind": str(kind)[:MAX_NAME],
        "pis": sorted({str(p)[:MAX_NAME] for p in pis})[:MAX_PIS],
        "shards": max(0, int(shards)),
        "wall_seconds": round(max(0.0, float(wall_seconds)), 3),
        "speedup": None if speedup is None else round(float(speedup), 3),
        "outcome": outcome,
        "finished": round(time.time() if finished is None else float(finished), 3),
    }


def encode(record: Mapping[str, Any]) -> bytes:
    """A record's message body: compact JSON, keys in :data:`FIELDS` order."""
    return json.dumps({k: record[k] for k in FIELDS}, separators=(",", ":")).encode()


def _number(doc: Mapping[str, Any], key: str, *, optional: bool = False) -> float | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRecord(f"{key} must be a number")
    if value < 0:
        raise BadRecord(f"{key} must not be negative")
    return float(value)


def _name(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise BadRecord(f"{key} must be a name of 1 to {MAX_NAME} characters")
    if any(not c.isprintable() for c in value):
        raise BadRecord(f"{key} must be printable")
    return value


def decode(body: bytes, user_id: str | None) -> dict[str, Any]:
    """A record from a message of the record queue, checked field by field.

    The student is the message's ``user_id`` (which the broker has checked
    against the sender's login), never what the body claims: a record whose
    body names another student is refused, one without ``user_id`` too."""
    if not user_id:
        raise BadRecord("no user_id: the sender is unknown")
    if len(body) > MAX_BODY:
        raise BadRecord(f"larger than {MAX_BODY} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRecord("not JSON") from None
    if not isinstance(doc, dict):
        raise BadRecord("not a JSON object")
    if doc.get("student") != user_id:
        raise BadRecord(f"names student {doc.get('student')!r} but was sent by {user_id!r}")
    pis = doc.get("pis")
    if not isinstance(pis, list) or len(pis) > MAX_PIS:
        raise BadRecord(f"pis must be a list of at most {MAX_PIS} names")
    outcome = doc.get("outcome")
    if outcome not in OUTCOMES:
        raise BadRecord(f"outcome must be one of {', '.join(OUTCOMES)}")
    shards = doc.get("shards")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 0:
        raise BadRecord("shards must be a whole number")
    return {
        "job": _name(doc, "job"),
        "student": user_id,
        "kind": _name(doc, "kind"),
        "pis": [_name({"pi": p}, "pi") for p in pis],
        "shards": shards,
        "wall_seconds": _number(doc, "wall_seconds"),
        "speedup": _number(doc, "speedup", optional=True),
        "outcome": outcome,
        "finished": _number(doc, "finished"),
    }


@dataclass(frozen=True)
class Target:
    """Where records go (``/etc/pimq/record.yaml``)."""

    host: str
    port: int
    vhost: str = RECORD_VHOST
    exchange: str = RECORD_EXCHANGE


def load_target(path: str | os.PathLike[str] | None = None) -> Target | None:
    """The record's broker from ``path`` (default ``$PIMQ_RECORD_CONFIG`` or
    :data:`RECORD_CONFIG`); None when there is none or it is unusable."""
    import yaml

    chosen = Path(path or os.environ.get("PIMQ_RECORD_CONFIG") or RECORD_CONFIG)
    try:
        data = yaml.safe_load(chosen.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    host, port = data.get("host"), data.get("port")
    vhost = data.get("vhost", RECORD_VHOST)
    exchange = data.get("exchange", RECORD_EXCHANGE)
    if not (isinstance(host, str) and host and isinstance(vhost, str) and vhost):
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return None
    if not isinstance(exchange, str) or not exchange:
        return None
    return Target(host, port, vhost, exchange)


def _send(cfg: Any, target: Target, body: bytes, done: list[bool]) -> None:
    """Publish ``body`` with a confirm; ``done`` gets True when it was taken."""
    import pika

    from pimq.protocol import amqp

    try:
        params = amqp.parameters(
            target.host,
            target.port,
            target.vhost,
            cfg.user,
            cfg.password,
            heartbeat=0,
            name="pimq record",
            ca=cfg.ca,
        )
        params.socket_timeout = DEADLINE
        params.stack_timeout = DEADLINE
        params.blocked_connection_timeout = DEADLINE
        conn = pika.BlockingConnection(params)
    except Exception:  # best effort: no broker, no vhost, no rights
        return
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            target.exchange,
            "",
            body,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                user_id=cfg.user,
                type="pimq.record",
            ),
        )
        done.append(True)
    except Exception:
        pass
    finally:
        try:
            conn.close()
        except Exception:
            pass


def publish(
    cfg: Any,
    record: Mapping[str, Any],
    target: Target | None = None,
    deadline: float = DEADLINE,
) -> bool:
    """Send one record for the teacher (``cfg``: the student's config, for
    the user, password and CA); True if the broker confirmed it within
    ``deadline`` s. Never raises."""
    try:
        target = target or load_target()
        if target is None:
            return False
        body = encode(record)
        done: list[bool] = []
        thread = threading.Thread(
            target=_send, args=(cfg, target, body, done), name="pimq-record", daemon=True
        )
        thread.start()
        thread.join(deadline)
        return bool(done)
    except Exception:
        return False


def job_ended(
    cfg: Any,
    job: str,
    kind: str,
    pis: Iterable[str],
    shards: int,
    wall_seconds: float,
    exit_code: int,
    speedup: float | None = None,
) -> bool:
    """The record of a job that just ended, published (best effort); a
    student module's kind is its file name (``./vowels.py``: ``vowels.py``)."""
    try:
        record = make_record(
            job,
            cfg.user,
            os.path.basename(kind) or kind,
            pis,
            shards,
            wall_seconds,
            outcome_of(exit_code),
            speedup,
        )
    except Exception:
        return False
    return publish(cfg, record)
