"""Wire format of shards, results, dead letters and control messages.

A shard is one persistent AMQP message: the body is raw bytes (a slice of the
input, or whatever the job kind's ``split`` made), ``reply_to`` is the job's
result queue, and these headers say what it is:

====================  =======================================================
``pimq-job``          job id (hex string)
``pimq-index``        shard index, 0-based
``pimq-count``        number of shards of the job
``pimq-kind``         job kind (``wordcount``, ``grep``, ... or a custom one)
``pimq-params``       job parameters, a JSON object as a string (left out
                      when there are none: ``{}``)
``pimq-attempt``      how many times the shard has already failed (left out
                      the first time: 0)
``pimq-code``         kind ``module`` only: the SHA-256 of the student's module
                      (its source travels once per job, see :func:`encode_code`)
``pimq-data``         a shard over a dataset already on the Pis (``pimq data
                      put``): ``<sha256>:<start>:<end>``, the byte range the
                      worker reads from its own copy; the body is empty
``pimq-shard-timeout-ms`` the student's per-shard wall-clock limit in ms
                      (``--shard-timeout``; an integer: a float header value
                      made the broker close the controller's connection in the
                      integration tests; left out when not given)
====================  =======================================================

Nothing else is set: every property and header costs the controller, the
broker and the worker on every shard (``bench/RESULTS.md``, per-shard
overhead).

A result message is a small JSON object with the results of one or more shards
of one job (see :func:`encode_results`). A dead letter is
the original message with ``pimq-reason`` (one line) and, where a job raised,
``pimq-traceback`` added. A control message is JSON
``{"cancel": "<job>", "reason": "cancelled" | "done" | "stopped"}``, or a module
announcement ``{"code": "<sha256>", "job": ..., "filename": ..., "source": ...}``.
When the teacher stops a job (``make stop-job``), its controller is told on
its own result queue: ``{"stopped": "<job>", "by": "teacher"}``
(:func:`encode_stopped`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pika

from pimq.protocol.topology import PERSISTENT, is_job_queue, is_result_queue

H_JOB = "pimq-job"
H_INDEX = "pimq-index"
H_COUNT = "pimq-count"
H_KIND = "pimq-kind"
H_PARAMS = "pimq-params"
H_ATTEMPT = "pimq-attempt"
H_REASON = "pimq-reason"
H_TRACEBACK = "pimq-traceback"
H_WORKER = "pimq-worker"
H_CODE = "pimq-code"
H_SHARD_TIMEOUT = "pimq-shard-timeout-ms"
H_DATA = "pimq-data"
H_UPLOAD = "pimq-upload"
H_CHUNK = "pimq-chunk"
H_CHUNKS = "pimq-chunks"

#: the kind of a student's own module (``pimq run ./module.py``)
MODULE_KIND = "module"
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
#: the largest student module accepted (a module is code, not data)
MAX_CODE = 1024 * 1024


def code_digest(source: bytes) -> str:
    """The name of a module's source everywhere: its SHA-256, in hex."""
    return hashlib.sha256(source).hexdigest()


KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
JOB_RE = re.compile(r"^[0-9a-f]{8,64}$")


class BadMessage(Exception):
    """A message that is not a valid shard; ``str(exc)`` is the reason."""


@dataclass(frozen=True)
class Shard:
    job: str
    index: int
    count: int
    kind: str
    params_json: str
    reply_to: str
    attempt: int = 0
    body: bytes = field(default=b"", repr=False)
    code: str = ""  # kind "module": the module's SHA-256
    shard_timeout: float = 0.0  # the student's per-shard limit (0: the admin's)
    #: a range of a dataset on the Pis: (sha256, start, end); the body is empty
    data: tuple[str, int, int] | None = None

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def shard_properties(
    job: str,
    index: int,
    count: int,
    kind: str,
    params_json: str,
    reply_to: str,
    attempt: int = 0,
    extra: dict[str, Any] | None = None,
) -> pika.BasicProperties:
    headers: dict[str, Any] = {H_JOB: job, H_INDEX: index, H_COUNT: count, H_KIND: kind}
    if params_json != "{}":
        headers[H_PARAMS] = params_json
    if extra:
        headers.update(extra)
    if attempt:
        headers[H_ATTEMPT] = attempt
    return pika.BasicProperties(
        delivery_mode=PERSISTENT,
        reply_to=reply_to,
        headers=headers,
    )


def retry_properties(props: pika.BasicProperties, attempt: int) -> pika.BasicProperties:
    headers = dict(props.headers or {})
    headers[H_ATTEMPT] = attempt
    return pika.BasicProperties(
        delivery_mode=PERSISTENT,
        content_type=props.content_type,
        message_id=props.message_id,
        reply_to=props.reply_to,
        headers=headers,
    )


def dead_properties(
    props: pika.BasicProperties | None, reason: str, worker: str, traceback: str | None = None
) -> pika.BasicProperties:
    headers = dict((props.headers if props else None) or {})
    headers[H_REASON] = reason.splitlines()[0] if reason else "unknown"
    headers[H_WORKER] = worker
    if traceback:
        headers[H_TRACEBACK] = traceback[-8000:]
    return pika.BasicProperties(
        delivery_mode=PERSISTENT,
        content_type=props.content_type if props else None,
        message_id=props.message_id if props else None,
        reply_to=props.reply_to if props else None,
        headers=headers,
    )


def job_of(props: pika.BasicProperties | None) -> str | None:
    """The job a message says it belongs to (``pimq-job``), nothing else
    checked; None if it says none."""
    headers = (props.headers if props else None) or {}
    job = headers.get(H_JOB) if isinstance(headers, dict) else None
    if isinstance(job, bytes):
        job = job.decode("utf-8", "replace")
    return job if isinstance(job, str) else None


def _int_header(headers: dict[str, Any], name: str) -> int:
    value = headers.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadMessage(f"header {name} missing or not an integer")
    return value


def parse_shard(props: pika.BasicProperties | None, body: bytes) -> Shard:
    """Validate a delivered message; raise :class:`BadMessage` with a reason."""
    headers = (props.headers if props else None) or {}
    if not isinstance(headers, dict):
        raise BadMessage("headers are not a table")
    job = _text(headers.get(H_JOB))
    if not isinstance(job, str) or not JOB_RE.match(job):
        raise BadMessage(f"header {H_JOB} missing or malformed")
    kind = _text(headers.get(H_KIND))
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise BadMessage(f"header {H_KIND} missing or malformed")
    index = _int_header(headers, H_INDEX)
    count = _int_header(headers, H_COUNT)
    if not 0 <= index < count:
        raise BadMessage(f"shard index {index} outside 0..{count - 1}")
    attempt = headers.get(H_ATTEMPT, 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise BadMessage(f"header {H_ATTEMPT} is not a non-negative integer")
    params_json = _text(headers.get(H_PARAMS, "{}"))
    if not isinstance(params_json, str):
        raise BadMessage(f"header {H_PARAMS} is not a string")
    try:
        params = json.loads(params_json)
    except ValueError as exc:
        raise BadMessage(f"header {H_PARAMS} is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise BadMessage(f"header {H_PARAMS} is not a JSON object")
    reply_to = props.reply_to if props else None
    if not is_result_queue(reply_to):
        raise BadMessage("reply_to missing or not a pimq.result.* queue")
    if not isinstance(body, bytes):
        raise BadMessage("body is not bytes")
    code = _text(headers.get(H_CODE, ""))
    if kind == MODULE_KIND and not (isinstance(code, str) and DIGEST_RE.match(code)):
        raise BadMessage(f"header {H_CODE} missing or not a SHA-256 digest")
    limit = headers.get(H_SHARD_TIMEOUT, 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise BadMessage(f"header {H_SHARD_TIMEOUT} is not a non-negative integer")
    data = _data_header(headers.get(H_DATA))
    return Shard(
        job,
        index,
        count,
        kind,
        params_json,
        reply_to,
        attempt,
        body,
        code or "",
        limit / 1000,
        data,
    )


def data_header(digest: str, start: int, end: int) -> str:
    return f"{digest}:{start}:{end}"


def _data_header(value: Any) -> tuple[str, int, int] | None:
    if value is None:
        return None
    parts = _text(value).split(":") if isinstance(value, (str, bytes)) else []
    if len(parts) != 3 or not DIGEST_RE.match(parts[0]) or not all(p.isdigit() for p in parts[1:]):
        raise BadMessage(f"header {H_DATA} is not <sha256>:<start>:<end>")
    start, end = int(parts[1]), int(parts[2])
    if end < start:
        raise BadMessage(f"header {H_DATA}: the range ends before it starts")
    return parts[0], start, end


@dataclass(frozen=True)
class Result:
    job: str
    index: int
    ok: bool
    value: Any = None
    seconds: float = 0.0
    worker: str = ""
    error: str = ""
    traceback: str = ""  # a student module's own traceback, when run() raised
    #: the shard named a dataset the Pi does not hold: send it again with its bytes
    missing: bool = False


def shard_result(
    index: int,
    ok: bool,
    value: Any = None,
    seconds: float = 0.0,
    error: str = "",
    traceback: str = "",
    missing: bool = False,
) -> bytes:
    """One shard's entry of a result message (JSON), made where the shard ran."""
    doc: dict[str, Any] = {"index": index, "ok": ok, "seconds": seconds}
    if ok:
        doc["value"] = value
    else:
        doc["error"] = error
        if traceback:
            doc["traceback"] = traceback[-8000:]
        if missing:
            doc["missing"] = True
    return json.dumps(doc, separators=(",", ":")).encode()


def json_result(index: int, seconds: float, value_json: bytes) -> bytes:
    """:func:`shard_result` of a success whose value is already JSON text (a
    sandbox's result, checked by the worker: not parsed and encoded again)."""
    head = json.dumps({"index": index, "ok": True, "seconds": seconds}, separators=(",", ":"))
    return head[:-1].encode() + b',"value":' + value_json + b"}"


def encode_results(job: str, worker: str, entries: list[bytes]) -> bytes:
    """A result message: the entries (:func:`shard_result`) of one or more shards
    of ``job`` that ``worker`` ran, as one JSON object
    ``{"job": ..., "worker": ..., "results": [entry, ...]}``. Quick shards travel
    in batches, so one message may carry many results."""
    head = json.dumps({"job": job, "worker": worker}, separators=(",", ":")).encode()
    return head[:-1] + b',"results":[' + b",".join(entries) + b"]}"


def decode_results(body: bytes) -> list[Result]:
    try:
        doc = json.loads(body)
        job, worker = str(doc["job"]), str(doc.get("worker", ""))
        return [
            Result(
                job=job,
                index=int(e["index"]),
                ok=bool(e["ok"]),
                value=e.get("value"),
                seconds=float(e.get("seconds", 0.0)),
                worker=worker,
                error=str(e.get("error", "")),
                traceback=str(e.get("traceback", "")),
                missing=e.get("missing") is True,
            )
            for e in doc["results"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadMessage(f"malformed result: {exc}") from None


def encode_cancel(job: str, reason: str = "cancelled") -> bytes:
    """Drop the job's remaining shards. ``reason`` is "cancelled", "done"
    (sent when a job ends, so stray duplicates of its shards are dropped) or
    "stopped" (by the teacher)."""
    return json.dumps({"cancel": job, "reason": reason}).encode()


def encode_stopped(job: str, by: str = "teacher") -> bytes:
    """Tell a job's controller, on its result queue (through :data:`RESULTS`),
    that someone else stopped the job (the workers are told by a cancel with
    reason "stopped" on ``pimq.control``)."""
    return json.dumps({"stopped": job, "by": by}).encode()


def decode_stopped(body: bytes) -> tuple[str, str] | None:
    """(job, who) of a stop message, or None if the body is not one."""
    if not body.startswith(b'{"stopped"'):
        return None
    doc = _doc(body)
    job, by = doc.get("stopped"), doc.get("by")
    if not (isinstance(job, str) and JOB_RE.match(job)):
        return None
    return job, by if isinstance(by, str) and by else "teacher"


def encode_code(job: str, code: str, filename: str, source: str) -> bytes:
    """Announce a student module to every worker: its digest, file name and source."""
    doc = {"code": code, "job": job, "filename": filename, "source": source}
    return json.dumps(doc).encode()


def decode_code(body: bytes) -> tuple[str, str, str, str] | None:
    """(job, digest, file name, source) of a module announcement, or None."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    job, code, filename, source = (doc.get(k) for k in ("job", "code", "filename", "source"))
    if not (isinstance(job, str) and JOB_RE.match(job)):
        return None
    if not (isinstance(code, str) and DIGEST_RE.match(code) and isinstance(source, str)):
        return None
    name = filename if isinstance(filename, str) and filename else "module.py"
    return job, code, name.replace("/", "_")[-100:], source


def decode_control(body: bytes) -> tuple[str, str] | None:
    """(job id, reason) of a cancel message, or None if it is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    job = doc.get("cancel") if isinstance(doc, dict) else None
    if not isinstance(job, str) or not JOB_RE.match(job):
        return None
    return job, str(doc.get("reason", "cancelled"))


# -- routing (``pimq run --pis``): roll call and route announcements ----------
PI_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def encode_rollcall(job: str, reply_to: str) -> bytes:
    """Ask every worker serving the vhost to say who it is (on ``pimq.control``):
    each answers with :func:`encode_here` to ``reply_to``."""
    return json.dumps({"rollcall": job, "reply_to": reply_to}).encode()


def decode_rollcall(body: bytes) -> tuple[str, str] | None:
    """(job, reply_to) of a roll call, or None."""
    doc = _doc(body)
    job, reply_to = doc.get("rollcall"), doc.get("reply_to")
    if isinstance(job, str) and JOB_RE.match(job) and is_result_queue(reply_to):
        return job, str(reply_to)
    return None


@dataclass(frozen=True)
class Here:
    """A worker's answer to a roll call."""

    worker: str
    busy: int = 0  # pool processes running shards now
    processes: int = 1
    #: the student's datasets this Pi holds (their SHA-256 digests)
    datasets: tuple[str, ...] = ()


def encode_here(job: str, here: Here) -> bytes:
    doc = {
        "here": here.worker,
        "job": job,
        "busy": here.busy,
        "processes": here.processes,
        "datasets": list(here.datasets),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_here(body: bytes) -> tuple[str, Here] | None:
    """(job, answer) of a roll-call answer, or None if the body is none."""
    if not body.startswith(b'{"here"'):
        return None
    doc = _doc(body)
    worker, job = doc.get("here"), doc.get("job")
    if not (isinstance(worker, str) and PI_NAME_RE.match(worker) and isinstance(job, str)):
        return None
    data = doc.get("datasets")
    data = data if isinstance(data, list) else []
    datasets = tuple(d for d in data if isinstance(d, str) and DIGEST_RE.match(d))
    busy, processes = doc.get("busy", 0), doc.get("processes", 1)
    return job, Here(
        worker,
        busy if isinstance(busy, int) else 0,
        processes if isinstance(processes, int) and processes > 0 else 1,
        datasets,
    )


def encode_route(job: str, queue: str, pis: list[str]) -> bytes:
    """The Pis that take ``job``'s shards from ``queue`` (re-announced while it runs)."""
    return json.dumps({"route": job, "queue": queue, "pis": sorted(pis)}).encode()


def decode_route(body: bytes) -> tuple[str, str, tuple[str, ...]] | None:
    """(job, queue, Pi names) of a route announcement, or None."""
    doc = _doc(body)
    job, queue, pis = doc.get("route"), doc.get("queue"), doc.get("pis")
    if not (isinstance(job, str) and JOB_RE.match(job) and is_job_queue(queue)):
        return None
    if not isinstance(pis, list) or not all(isinstance(p, str) for p in pis):
        return None
    return job, str(queue), tuple(pis)


def _doc(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# -- datasets (``pimq data put|list|rm``; :mod:`pimq.client.data`) ------------
def encode_data_put(
    digest: str, name: str, size: int, upload: str, reply_to: str, pis: list[str]
) -> bytes:
    """Ask the Pis ``pis`` to receive a dataset in ``upload`` (each from its own
    queue, :func:`pimq.protocol.topology.data_queue`)."""
    doc = {
        "data_put": digest,
        "name": name,
        "size": size,
        "upload": upload,
        "reply_to": reply_to,
        "pis": sorted(pis),
    }
    return json.dumps(doc).encode()


@dataclass(frozen=True)
class DataPut:
    digest: str
    name: str
    size: int
    upload: str
    reply_to: str
    pis: tuple[str, ...]


def decode_data_put(body: bytes) -> DataPut | None:
    doc = _doc(body)
    digest, upload, reply_to = doc.get("data_put"), doc.get("upload"), doc.get("reply_to")
    size, pis, name = doc.get("size"), doc.get("pis"), doc.get("name", "")
    if not (isinstance(digest, str) and DIGEST_RE.match(digest)):
        return None
    if not (isinstance(upload, str) and JOB_RE.match(upload) and is_result_queue(reply_to)):
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return None
    if not isinstance(pis, list) or not all(isinstance(p, str) for p in pis):
        return None
    label = name if isinstance(name, str) else ""
    return DataPut(digest, label.replace("/", "_")[-200:], size, upload, str(reply_to), tuple(pis))


def encode_data_rm(digest: str, reply_to: str) -> bytes:
    return json.dumps({"data_rm": digest, "reply_to": reply_to}).encode()


def decode_data_rm(body: bytes) -> tuple[str, str] | None:
    doc = _doc(body)
    digest, reply_to = doc.get("data_rm"), doc.get("reply_to")
    if isinstance(digest, str) and DIGEST_RE.match(digest) and is_result_queue(reply_to):
        return digest, str(reply_to)
    return None


#: what a Pi says of an upload or a removal
DATA_EVENTS = ("accepted", "refused", "got", "stored", "failed", "removed", "absent")


def encode_data_event(ref: str, pi: str, event: str, chunk: int = -1, error: str = "") -> bytes:
    """A Pi's word on upload (or dataset, for removals) ``ref``."""
    doc: dict[str, Any] = {"data_event": event, "ref": ref, "pi": pi}
    if chunk >= 0:
        doc["chunk"] = chunk
    if error:
        doc["error"] = error
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_data_event(body: bytes) -> tuple[str, str, str, int, str] | None:
    """(ref, Pi, event, chunk, error) of a Pi's word on an upload or removal."""
    doc = _doc(body)
    event, ref, pi = doc.get("data_event"), doc.get("ref"), doc.get("pi")
    if event not in DATA_EVENTS or not isinstance(ref, str) or not isinstance(pi, str):
        return None
    chunk = doc.get("chunk", -1)
    return ref, pi, str(event), chunk if isinstance(chunk, int) else -1, str(doc.get("error", ""))


def chunk_properties(upload: str, index: int, count: int) -> pika.BasicProperties:
    """A dataset chunk: transient (an upload a broker restart cut is put again)."""
    return pika.BasicProperties(
        delivery_mode=1, headers={H_UPLOAD: upload, H_CHUNK: index, H_CHUNKS: count}
    )
