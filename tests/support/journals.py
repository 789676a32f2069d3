"""Each node's journal, kept when a test on the simulated classroom fails.

A classroom test that fails in CI is read long after its room is gone: what
systemd, sshd, RabbitMQ and pimq-worker said on every node is the evidence.
``support.room`` calls :func:`keep` from ``pytest_runtest_makereport``; the
journals go to ``artifacts/<suite>/<module>/<test>/<node>.journal`` (git-ignored;
``PIMQ_ARTIFACTS`` moves the folder), read with ``journalctl`` over
``docker exec`` as root, so nothing on the node has to be set up for it.

A session fixture that fails (the room not coming up, site.yml not converging)
fails every test that needs it with the same error: the journals are kept once,
with the first such test, and the others point there.
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import nodes

ARTIFACTS = Path(os.environ.get("PIMQ_ARTIFACTS", nodes.REPO / "artifacts"))
# The exceptions already kept for (a cached fixture's error is raised again for
# every test that uses it): exception object -> where its journals are.
_KEPT: list[tuple[BaseException, Path]] = []


def folder(nodeid: str, when: str) -> Path:
    """Where a test's journals go: ``tests/chaos/test_faults.py::test_x[kill -9]`` ->
    ``artifacts/chaos/test_faults/test_x[kill_-9]`` (``.setup``/``.teardown`` appended
    when the test failed there)."""
    path, _, name = nodeid.partition("::")
    rel = Path(path).with_suffix("")
    if rel.parts[:1] == ("tests",):
        rel = Path(*rel.parts[1:])
    name = re.sub(r"[^\w.\[\]=+-]+", "_", name.replace("::", ".")) or "collect"
    return ARTIFACTS / rel / (name if when == "call" else f"{name}.{when}")


def _journal(node: str, out: Path) -> str:
    """One node's whole journal to ``out``; a line saying why if it cannot be read."""
    argv = ["docker", "exec", nodes.container(node), "journalctl", "--no-pager", "-o",
            "short-iso-precise"]  # fmt: skip
    try:
        with out.open("wb") as f:
            proc = subprocess.run(argv, stdout=f, stderr=subprocess.PIPE, timeout=120)
    except subprocess.TimeoutExpired:
        return f"{node}: journalctl did not finish in 120 s"
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip()
        with out.open("ab") as f:
            f.write(f"\n-- journal not (fully) read: rc={proc.returncode} {why}\n".encode())
        return f"{node}: rc={proc.returncode} {why}"
    return ""


def keep(room: nodes.Room, nodeid: str, when: str, error: BaseException | None) -> str:
    """Keep every node's journal for a failed test; what to tell the reader."""
    for seen, where in _KEPT:
        if error is not None and seen is error:
            return f"same error as an earlier test: journals in {where}"
    where = folder(nodeid, when)
    where.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(room.nodes)) as pool:
        problems = [
            p for p in pool.map(lambda n: _journal(n, where / f"{n}.journal"), room.nodes) if p
        ]
    if error is not None:
        _KEPT.append((error, where))
    note = f"journals of {', '.join(room.nodes)} in {where}"
    return note + (f" (not all read: {'; '.join(problems)})" if problems else "")
