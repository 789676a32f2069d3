"""One line per pytest session for the table ``make test`` prints (tests/harness/suites.py).

When ``PIMQ_SUITE_REPORT`` names a file, every pytest session appends one JSON
line to it at the end: which interpreter ran it, how long it took, and pytest's
own counts (passed, failed, error, skipped, xfailed, xpassed). The runner reads
them back per suite; a suite that runs pytest twice (integration: the newest
pika and Debian's) gets a row per session. Without the variable it does nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

ENV = "PIMQ_SUITE_REPORT"
COUNTS = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
_started = pytest.StashKey[float]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_started] = time.monotonic()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats if reporter is not None else {}
    started = session.config.stash.get(_started, time.monotonic())
    line = {
        "python": sys.executable,
        "args": list(session.config.invocation_params.args),
        "exitstatus": int(exitstatus),
        "seconds": round(time.monotonic() - started, 1),
        **{key: len(stats.get(key, [])) for key in COUNTS},
    }
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
