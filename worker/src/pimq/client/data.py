"""``pimq data put|list|rm``: a student's datasets, shipped to the Pis once.

Everything goes over the student's own vhost and credentials (no other
port, no other account):

* **put.** A roll call on ``pimq.control`` names the Pis serving the student
  and the datasets each holds. For the Pis lacking this one the uploader
  declares one queue each (``pimq.data.<upload>.<pi>``, bound to the
  ``pimq.data`` exchange under the upload's id), announces the upload, and
  publishes the file once, in 128 KiB chunks with publisher confirms; the
  broker copies each chunk to every Pi's queue. A chunk goes out only while
  it is at most :data:`WINDOW` chunks ahead of the slowest Pi's ``got``: flow
  control end to end, so a Pi on a slow link holds the upload back instead
  of the broker's memory filling up, and a Pi's queue never holds more than
  ``WINDOW`` chunks (768 KiB): under the 1 MiB cap every queue of a student
  vhost has (roles/pimq_broker/README.md), so upload queues need no larger
  cap, and a student who declares queues of that name gains nothing. Each Pi
  checks the SHA-256 of what came and keeps the file under it
  (:mod:`pimq.worker.datasets`).
* **list.** A roll call: which Pis hold which of the student's datasets, with
  the names and sizes recorded here when they were put.
* **rm.** ``data_rm`` on ``pimq.control``; every Pi that has it says so.

What was put is recorded in ``$XDG_STATE_HOME/pimq/datasets.json`` (digest,
name, size, the file's inode/size/mtime): ``pimq run`` then knows a file is a
dataset already on the Pis without reading it again (:func:`find`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

from pimq.client.progress import Progress
from pimq.config import StudentConfig
from pimq.errors import PimqError, UsageError
from pimq.jobs.split import FileSlices
from pimq.protocol import topology
from pimq.protocol.session import Session
from pimq.protocol.wire import (
    H_DATA,
    Here,
    chunk_properties,
    data_header,
    decode_data_event,
    decode_here,
    encode_data_put,
    encode_data_rm,
    encode_rollcall,
)

MIB = 1 << 20
CHUNK = 128 << 10
#: chunks in flight beyond the slowest Pi's last ``got``: WINDOW x CHUNK stays
#: under the smallest per-queue byte cap the admin may set (pimq_preflight)
WINDOW = 6
ROLLCALL_WAIT = 2.0
#: a Pi silent this long during an upload is given up (put again later)
STALL = 60.0


class DataError(PimqError):
    exit_code = 2


def file_digest(path: str | os.PathLike[str], on_bytes: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(CHUNK), b""):
            h.update(piece)
            if on_bytes:
                on_bytes(len(piece))
    return h.hexdigest()


# -- the local record ----------------------------------------------------------
def record_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "pimq" / "datasets.json"


def load_record() -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def save_record(record: dict[str, dict[str, Any]]) -> None:
    path = record_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(".datasets.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def stamp(path: str | os.PathLike[str]) -> list[int]:
    st = os.stat(path)
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def find(path: str) -> str | None:
    """The digest of the dataset ``path`` holds, if it was put: the file as it
    was put (same inode, size and mtime), or a file of a put dataset's size
    whose bytes hash the same (a copy); None otherwise."""
    try:
        now = stamp(path)
    except OSError:
        return None
    record = load_record()
    for digest, entry in record.items():
        if now in entry.get("stamps", []):
            return digest
    same_size = [d for d, e in record.items() if e.get("size") == now[1]]
    if not same_size:
        return None
    digest = file_digest(path)
    if digest in same_size:
        record[digest].setdefault("stamps", []).append(now)
        save_record(record)
        return digest
    return None


# -- one blocking session: roll calls and replies ------------------------------
@dataclass
class Replies:
    """The student's session with a private reply queue on ``pimq.results``."""

    session: Session
    queue: str
    here: dict[str, Here] = field(default_factory=dict)
    events: list[tuple[str, str, str, int, str]] = field(default_factory=list)

    @classmethod
    def open(cls, cfg: StudentConfig, name: str) -> Replies:
        session = Session(cfg, name)
        ch = session.ch
        topology.declare_shared(ch)
        queue = topology.result_queue(secrets.token_hex(8))
        ch.queue_declare(queue=queue, exclusive=True, auto_delete=True)
        ch.queue_bind(queue=queue, exchange=topology.RESULTS, routing_key=queue)
        replies = cls(session, queue)
        ch.basic_consume(queue=queue, on_message_callback=replies._on_message, auto_ack=True)
        return replies

    def _on_message(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        here = decode_here(body)
        if here is not None:
            self.here[here[1].worker] = here[1]
            return
        event = decode_data_event(body)
        if event is not None:
            self.events.append(event)

    def pump(self, seconds: float) -> None:
        self.session.conn.process_data_events(time_limit=seconds)

    def control(self, body: bytes) -> None:
        props = pika.BasicProperties(delivery_mode=topology.TRANSIENT, content_type=topology.JSON)
        self.session.ch.basic_publish(topology.CONTROL, "", body, props)

    def rollcall(self) -> dict[str, Here]:
        """Every Pi serving the vhost, by name (what each holds in ``datasets``)."""
        self.here = {}
        job = secrets.token_hex(8)
        consumers = self.session.probe_queue(topology.TASKS)
        expected = consumers[1] if consumers else 0
        self.control(encode_rollcall(job, self.queue))
        deadline = time.monotonic() + ROLLCALL_WAIT
        while time.monotonic() < deadline and (len(self.here) < expected or not self.here):
            self.pump(0.05)
        self.pump(0.05)  # a Pi busy with a route does not consume pimq.tasks: a moment more
        return dict(self.here)

    def close(self) -> None:
        self.session.__exit__()


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# -- put ---------------------------------------------------------------------
def put(cfg: StudentConfig, path: str, name: str | None = None, progress: bool = True) -> int:
    try:
        before = stamp(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not os.path.isfile(path):
        raise UsageError(f"{path} is not a file")
    label = name or os.path.basename(path)
    size = before[1]
    digest = file_digest(path)
    replies = Replies.open(cfg, "pimq data put")
    try:
        room = replies.rollcall()
        if not room:
            raise DataError(f"no Pi serves vhost {cfg.vhost!r} now: nothing to put the dataset on")
        holders = sorted(n for n, h in room.items() if digest in h.datasets)
        targets = sorted(n for n in room if n not in holders)
        stored: list[str] = list(holders)
        failed: dict[str, str] = {}
        if targets:
            stored += _upload(replies, path, before, digest, label, size, targets, failed, progress)
    finally:
        replies.close()
    record = load_record()
    entry = record.setdefault(digest, {"name": label, "size": size, "stamps": []})
    entry["name"] = label
    if before not in entry["stamps"]:
        entry["stamps"].append(before)
    if stored:
        save_record(record)
    for pi, error in sorted(failed.items()):
        print(f"pimq: {pi}: {error}", file=sys.stderr)
    print(f"{digest[:12]}  {label}  {_size(size)}  on {', '.join(sorted(stored)) or 'no Pi'}")
    if holders:
        print(f"(already there: {', '.join(holders)})", file=sys.stderr)
    return 2 if failed else 0


def _upload(
    replies: Replies,
    path: str,
    before: list[int],
    digest: str,
    label: str,
    size: int,
    targets: list[str],
    failed: dict[str, str],
    progress: bool,
) -> list[str]:
    """Send the file to ``targets``; the Pis that stored it (``failed``: why not)."""
    ch = replies.session.ch
    upload = secrets.token_hex(8)
    queues = {pi: topology.data_queue(upload, pi) for pi in targets}
    for queue in queues.values():
        ch.queue_declare(queue=queue, **topology.data_queue_options())
        ch.queue_bind(queue=queue, exchange=topology.DATA, routing_key=upload)
    ch.confirm_delivery()
    chunks = max(1, -(-size // CHUNK))
    replies.control(encode_data_put(digest, label, size, upload, replies.queue, targets))
    got = {pi: -1 for pi in targets}  # the last chunk each Pi wrote
    heard = {pi: time.monotonic() for pi in targets}
    accepted: set[str] = set()
    stored: list[str] = []
    bar = Progress(-(-size // MIB), unit="MiB") if progress else None

    def show(done: int) -> None:  # chunks the slowest Pi has, as MiB
        if bar:
            bar.update(-(-min(done * CHUNK, size) // MIB))

    seen = 0

    def take_events() -> None:
        nonlocal seen
        for ref, pi, event, chunk, error in replies.events[seen:]:
            if ref != upload or pi not in got:
                continue
            heard[pi] = time.monotonic()
            if event == "accepted":
                accepted.add(pi)
            elif event == "got":
                got[pi] = max(got[pi], chunk)
            elif event == "stored":
                stored.append(pi)
                accepted.add(pi)
                got[pi] = chunks
            elif event in ("refused", "failed"):
                failed[pi] = error or event
                got.pop(pi, None)
        seen = len(replies.events)

    def drop_silent() -> None:
        now = time.monotonic()
        for pi in list(got):
            if pi not in stored and now - heard[pi] > STALL:
                failed[pi] = f"no word from it for {STALL:g} s: not stored there"
                got.pop(pi)

    # every Pi says yes or no first (over quota, say) before a byte is sent
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and any(p not in accepted for p in got):
        replies.pump(0.05)
        take_events()
    for pi in [p for p in got if p not in accepted]:
        failed[pi] = "did not answer the upload"
        got.pop(pi)
    try:
        with open(path, "rb") as f:
            index = 0
            while index < chunks and got:
                if index > min(got.values()) + WINDOW:
                    replies.pump(0.02)
                    take_events()
                    drop_silent()
                    continue
                body = f.read(CHUNK)
                if stamp(path) != before:
                    raise UsageError(f"{path} changed while it was put")
                ch.basic_publish(
                    topology.DATA, upload, body, chunk_properties(upload, index, chunks)
                )
                index += 1
                show(min(min(got.values(), default=index) + 1, chunks) if got else index)
                replies.pump(0)
                take_events()
        while any(p not in stored for p in got):
            replies.pump(0.05)
            take_events()
            drop_silent()
            show(min(min(got.values(), default=chunks) + 1, chunks))
    finally:
        if bar:
            bar.clear()
        for queue in queues.values():
            try:
                ch.queue_delete(queue=queue)
            except Exception:
                pass
    return stored


# -- list, rm -------------------------------------------------------------------
def listing(cfg: StudentConfig, as_json: bool = False) -> int:
    replies = Replies.open(cfg, "pimq data list")
    try:
        room = replies.rollcall()
    finally:
        replies.close()
    record = load_record()
    held: dict[str, list[str]] = {}
    for pi, here in room.items():
        for digest in here.datasets:
            held.setdefault(digest, []).append(pi)
    rows = []
    for digest in sorted(set(record) | set(held)):
        entry = record.get(digest, {})
        rows.append(
            {
                "name": entry.get("name", "?"),
                "size": entry.get("size"),
                "sha256": digest,
                "pis": sorted(held.get(digest, [])),
            }
        )
    if as_json:
        json.dump({"datasets": rows, "pis": sorted(room)}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print("no datasets (pimq data put FILE)")
        return 0
    print(
        f"{'NAME':<24} {'SIZE':>10}  {'SHA256':<12}  PIS (of {', '.join(sorted(room)) or 'none'})"
    )
    for r in rows:
        size = _size(r["size"]) if isinstance(r["size"], int) else "?"
        print(f"{r['name']:<24} {size:>10}  {r['sha256'][:12]}  {', '.join(r['pis']) or '-'}")
    return 0


def remove(cfg: StudentConfig, name: str) -> int:
    record = load_record()
    matches = [d for d, e in record.items() if e.get("name") == name or d.startswith(name)]
    if len(name) == 64 and name not in matches:
        matches.append(name)
    if not matches:
        raise UsageError(f"no dataset named {name!r} (pimq data list shows yours)")
    if len(matches) > 1:
        raise UsageError(f"{name!r} names {len(matches)} datasets: give its checksum instead")
    digest = matches[0]
    replies = Replies.open(cfg, "pimq data rm")
    try:
        room = replies.rollcall()
        replies.control(encode_data_rm(digest, replies.queue))
        deadline = time.monotonic() + ROLLCALL_WAIT
        answered: dict[str, str] = {}
        while time.monotonic() < deadline and len(answered) < len(room):
            replies.pump(0.05)
            answered = {pi: ev for ref, pi, ev, _c, _e in replies.events if ref == digest}
    finally:
        replies.close()
    record.pop(digest, None)
    save_record(record)
    removed = sorted(pi for pi, ev in answered.items() if ev == "removed")
    print(f"removed {digest[:12]} from {', '.join(removed) or 'no Pi (none held it)'}")
    return 0


# -- pimq run over a dataset ------------------------------------------------------
class RangeBodies(Sequence[bytes]):
    """A file's shards when the file is a dataset on the Pis: empty bodies with
    a ``pimq-data`` range each, except for the shards a Pi asked bytes for
    (:meth:`send_bytes`: it lacked the dataset), which carry their bytes."""

    def __init__(self, slices: FileSlices, digest: str) -> None:
        self.slices = slices
        self.digest = digest
        self.full: set[int] = set()

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
        return self.slices[index] if index in self.full else b""

    def headers_for(self, index: int) -> dict[str, Any]:
        if index in self.full:
            return {}
        b = self.slices.bounds
        return {H_DATA: data_header(self.digest, b[index], b[index + 1])}

    def send_bytes(self, index: int) -> None:
        self.full.add(index)


def as_ranges(bodies: Sequence[bytes], router: Any, digest: str | None) -> RangeBodies | None:
    """``bodies`` as ranges of dataset ``digest`` when they are slices of the very
    file that was put and a Pi of ``router`` (a routed job's) holds it; else None
    (the shards carry their bytes)."""
    if (
        router is not None
        and digest
        and isinstance(bodies, FileSlices)
        and router.holds(digest)
        and find(bodies.path) == digest
    ):
        return RangeBodies(bodies, digest)
    return None


def dataset_in(args: list[str]) -> str | None:
    """The digest of the first argument naming a file put as a dataset."""
    for arg in args:
        if not arg.startswith("-") and os.path.isfile(arg):
            digest = find(arg)
            if digest is not None:
                return digest
    return None
