"""A student's datasets on this Pi: receiving ``pimq data put``, removing, and
the quota (the store itself is :class:`pimq.worker.store.DataStore`).

An upload is announced on ``pimq.control`` (``data_put``, naming the Pis
that should take it). A Pi named there answers ``accepted`` (or ``refused``:
over the student's quota, or a bad name) to the uploader's reply queue and
consumes its own chunk queue ``pimq.data.<upload>.<pi>`` with a small
window. Each chunk is written to a part file and hashed as it comes, then
acked, and ``got <chunk>`` goes back: the uploader never runs more than a
few chunks ahead of the slowest Pi (flow control end to end, not only to
the broker). After the last chunk the part file is kept under its digest if
the bytes hash to it (``stored``), else removed (``failed``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pimq.protocol import topology
from pimq.protocol.wire import (
    H_CHUNK,
    H_CHUNKS,
    H_UPLOAD,
    DataPut,
    encode_data_event,
)
from pimq.worker.store import DataStore, StoreError

if TYPE_CHECKING:
    from pimq.worker.vhost import VhostLink

log = logging.getLogger(__name__)

#: chunks a Pi holds unacked per upload (the uploader's window is about this)
CHUNK_WINDOW = 4
MIB = 1 << 20


@dataclass
class Upload:
    put: DataPut
    part: Path
    tag: str = ""
    next: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)


class Datasets:
    """The uploads arriving on one vhost link, and removals."""

    def __init__(self, link: VhostLink, store: DataStore, quota: int) -> None:
        self.link = link
        self.store = store
        self.quota = quota  # bytes per student on this Pi; 0: no datasets at all
        self.uploads: dict[str, Upload] = {}

    def digests(self) -> list[str]:
        try:
            return [d.digest for d in self.store.list(self.link.vhost)]
        except (OSError, StoreError):
            return []

    def _say(self, reply_to: str, ref: str, event: str, chunk: int = -1, error: str = "") -> None:
        body = encode_data_event(ref, self.link.worker_name, event, chunk, error)
        self.link.publish(topology.RESULTS, reply_to, body, topology.RESULT_PROPS)

    # -- put ------------------------------------------------------------------
    def on_put(self, put: DataPut) -> None:
        link = self.link
        if link.worker_name not in put.pis or put.upload in self.uploads:
            return
        student = link.vhost
        if self.store.has(student, put.digest):
            self._say(put.reply_to, put.upload, "stored")
            return
        used = self.store.usage(student)
        if used + put.size > self.quota:
            self._say(
                put.reply_to,
                put.upload,
                "refused",
                error=(
                    f"over your dataset quota on {link.worker_name}: "
                    f"{used / MIB:.1f} MiB used + {put.size / MIB:.1f} MiB > "
                    f"{self.quota / MIB:.0f} MiB (pimq data rm NAME frees room; "
                    "your teacher sets the quota)"
                ),
            )
            return
        try:
            part = self.store.begin(student, put.digest, put.upload)
        except (OSError, StoreError) as exc:
            self._say(put.reply_to, put.upload, "refused", error=f"cannot store it: {exc}")
            return
        upload = Upload(put, part)
        self.uploads[put.upload] = upload
        ch = link.channel
        queue = topology.data_queue(put.upload, link.worker_name)
        ch.queue_declare(queue=queue, **topology.data_queue_options())
        ch.basic_qos(prefetch_count=CHUNK_WINDOW)
        upload.tag = ch.basic_consume(queue=queue, on_message_callback=self._on_chunk)
        self._say(put.reply_to, put.upload, "accepted")
        log.info(
            "vhost %s: receiving dataset %s (%s, %d bytes)",
            student,
            put.digest[:12],
            put.name,
            put.size,
        )

    def _on_chunk(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        headers = (props.headers if props else None) or {}
        upload_id = headers.get(H_UPLOAD)
        if isinstance(upload_id, bytes):
            upload_id = upload_id.decode()
        index, count = headers.get(H_CHUNK), headers.get(H_CHUNKS)
        upload = self.uploads.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None or not isinstance(index, int) or not isinstance(count, int):
            ch.basic_ack(method.delivery_tag)
            return
        put = upload.put
        if index == upload.next:  # anything else is a redelivery of a chunk written
            try:
                with open(upload.part, "ab") as f:
                    f.write(body)
            except OSError as exc:
                ch.basic_ack(method.delivery_tag)
                self._end(upload, "failed", f"cannot write it: {exc.strerror}")
                return
            upload.hasher.update(body)
            upload.next += 1
        ch.basic_ack(method.delivery_tag)
        if upload.next < count:
            self._say(put.reply_to, put.upload, "got", upload.next - 1)
            return
        try:
            self.store.commit(
                self.link.vhost, put.digest, upload.part, put.name, upload.hasher.hexdigest()
            )
        except (OSError, StoreError) as exc:
            self._end(upload, "failed", str(exc))
            return
        log.info("vhost %s: dataset %s stored (%s)", self.link.vhost, put.digest[:12], put.name)
        self._end(upload, "stored")

    def _end(self, upload: Upload, event: str, error: str = "") -> None:
        self.uploads.pop(upload.put.upload, None)
        ch = self.link.channel
        if ch is not None and ch.is_open and upload.tag:
            ch.basic_cancel(upload.tag)
        if event != "stored":
            upload.part.unlink(missing_ok=True)
            log.warning(
                "vhost %s: dataset %s %s: %s", self.link.vhost, upload.put.digest[:12], event, error
            )
        self._say(upload.put.reply_to, upload.put.upload, event, error=error)

    def lost(self) -> None:
        """The connection is gone: every upload under way is given up (put again)."""
        for upload in self.uploads.values():
            upload.part.unlink(missing_ok=True)
        self.uploads.clear()

    # -- rm -------------------------------------------------------------------
    def on_rm(self, digest: str, reply_to: str) -> None:
        try:
            removed = self.store.remove(self.link.vhost, digest)
        except (OSError, StoreError) as exc:
            self._say(reply_to, digest, "failed", error=str(exc))
            return
        self._say(reply_to, digest, "removed" if removed else "absent")
