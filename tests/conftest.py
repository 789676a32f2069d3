"""What every suite shares: the sample corpus, the simulated room, the suite report.

pytest reads this file for any test under tests/ (``pythonpath = tests`` in
pytest.ini puts ``support`` on the import path), so no suite edits ``sys.path``:

- ``support.room``: the simulated classroom's fixtures (``room``, ``converged``,
  ``converge_vars``, ``creds``) and the journals kept when a classroom test fails;
- ``support.report``: one line per session for ``make test``'s table of suites.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support import data

pytest_plugins = ["support.room", "support.report"]

# A suite started in the background by a non-interactive shell (``make test &``,
# ``nohup ... &``) inherits SIGINT ignored, and so would every program it starts:
# a Python program that starts with SIGINT ignored never raises KeyboardInterrupt,
# and the tests press Ctrl-C (SIGINT) on tutorials and on ``pimq run``. Handled
# here, it is back to the default in every child.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    """The repository's sample corpus (data/tinyshakespeare.txt); a test that takes it
    fails, naming the file, when it is missing, instead of testing less."""
    return data.shakespeare()
