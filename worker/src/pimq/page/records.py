"""The teacher's record on the page's side: a consumer and a small store.

:class:`RecordStore` keeps the newest ``keep`` records (one per student and
job) in ``records.json`` of the service's state directory, written whole to
a temporary file and renamed (a crash never leaves half a file), so the
page shows the class's last jobs again after a restart.

:class:`RecordConsumer` is one thread holding the page's connection to the
head broker (TLS, the page's user on the record vhost): it declares the
exchange ``pimq.record`` (fanout) and the queue of the same name, binds
them, and for each message checks it (:func:`pimq.client.record.decode`:
the student is the broker-checked ``user_id``), stores it and only then
acks it. A message that is no valid record is acked and dropped. Lost
connections are retried every few seconds.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pimq.client.record import BadRecord, decode

LOG = logging.getLogger("pimq.page")
KEEP = 200
RETRY_SECONDS = 5.0


class RecordStore:
    def __init__(self, path: str | os.PathLike[str] | None, keep: int = KEEP) -> None:
        self.path = Path(path) if path else None
        self.keep = max(1, int(keep))
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.load()

    def load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, list):
            with self.lock:
                self.records = [r for r in data if isinstance(r, dict)]
                self._trim()

    def _trim(self) -> None:
        self.records.sort(key=lambda r: float(r.get("finished") or 0))
        del self.records[: max(0, len(self.records) - self.keep)]

    def add(self, record: Mapping[str, Any]) -> bool:
        """Keep ``record`` (a later one of the same student and job replaces
        it), trim to the newest ``keep``, save. False if it was a duplicate."""
        key = (record.get("student"), record.get("job"))
        with self.lock:
            before = [r for r in self.records if (r.get("student"), r.get("job")) == key]
            if before and before[0] == dict(record):
                return False
            self.records = [r for r in self.records if (r.get("student"), r.get("job")) != key]
            self.records.append(dict(record))
            self._trim()
            snapshot = list(self.records)
        self._save(snapshot)
        return True

    def _save(self, records: list[dict[str, Any]]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".records.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(records, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def newest(self, count: int = 20) -> list[dict[str, Any]]:
        """The newest ``count`` records, newest first."""
        with self.lock:
            return list(reversed(self.records[-count:]))


class RecordConsumer(threading.Thread):
    """Feeds a :class:`RecordStore` from the record queue (a daemon thread)."""

    def __init__(
        self,
        store: RecordStore,
        connect: Callable[[], Any],
        exchange: str,
        queue: str | None = None,
    ) -> None:
        super().__init__(name="pimq-page-records", daemon=True)
        self.store = store
        self.connect = connect
        self.exchange = exchange
        self.queue = queue or exchange
        self.stopping = threading.Event()
        self.connected = False
        self.last_error: str | None = None

    def handle(self, body: bytes, user_id: str | None) -> bool:
        """One message: True if it was a record (and is stored)."""
        try:
            record = decode(body, user_id)
        except BadRecord as exc:
            LOG.warning("dropped a message on %s: %s", self.queue, exc)
            return False
        self.store.add(record)
        return True

    def run(self) -> None:  # pragma: no cover - exercised on the classroom
        while not self.stopping.is_set():
            conn = None
            try:
                conn = self.connect()
                channel = conn.channel()
                channel.exchange_declare(self.exchange, "fanout", durable=True)
                channel.queue_declare(self.queue, durable=True)
                channel.queue_bind(self.queue, self.exchange)
                channel.basic_qos(prefetch_count=50)
                self.connected = True
                self.last_error = None
                LOG.info("consuming the teacher's record (%s)", self.queue)
                for method, props, body in channel.consume(self.queue, inactivity_timeout=1):
                    if self.stopping.is_set():
                        break
                    if method is None:
                        continue
                    self.handle(body, getattr(props, "user_id", None))
                    channel.basic_ack(method.delivery_tag)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                LOG.warning("teacher's record: %s; again in %.0f s", self.last_error, RETRY_SECONDS)
            finally:
                self.connected = False
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            self.stopping.wait(RETRY_SECONDS)

    def stop(self) -> None:
        self.stopping.set()
