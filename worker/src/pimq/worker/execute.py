"""What a pool process does with one shard. Runs off the broker thread."""

from __future__ import annotations

import json
import signal
import time
import traceback

from pimq import jobs
from pimq.protocol.wire import shard_result

#: (ok, seconds, the shard's result entry, traceback text)
ShardOutcome = tuple[bool, float, bytes, str]


def child_init() -> None:
    """Pool processes leave SIGTERM/SIGINT to the main process, which drains."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def execute(kind: str, body: bytes, params_json: str, index: int) -> ShardOutcome:
    """Run one shard: (ok, seconds, its result entry, traceback text). The entry
    (:func:`pimq.protocol.wire.shard_result`) is encoded here, off the I/O thread."""
    start = time.perf_counter()
    try:
        value = jobs.load(kind).run(body, json.loads(params_json))
        seconds = time.perf_counter() - start
        return True, seconds, shard_result(index, True, value, seconds), ""
    except Exception:
        return False, time.perf_counter() - start, b"", traceback.format_exc()
