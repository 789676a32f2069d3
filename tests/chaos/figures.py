"""The chaos suite's figures: tests add rows, the session prints and writes them."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# section -> list of (label, {column: value})
ROWS: dict[str, list[tuple[str, dict[str, object]]]] = {}
# section -> text printed under its table (what the columns mean, what is allowed)
NOTES: dict[str, str] = {}


def add(section: str, label: str, **values: object) -> None:
    ROWS.setdefault(section, []).append((label, values))
    out = os.environ.get("CHAOS_RESULTS")
    if out:  # written as tests finish, so an interrupted run keeps what it measured
        Path(out).write_text(render(" ".join(sys.argv)))


def note(section: str, text: str) -> None:
    NOTES[section] = text.strip()


def _machine() -> str:
    cpus = os.cpu_count()
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{platform.node()}: {cpus} CPUs {model}, {platform.platform()}, Docker {docker}"


ELSEWHERE = """## Covered by other suites (not repeated here)

- the roster's validation rule by rule (pure logic): `tests/unit/test_roster_unit.py`;
  roster changes touching exactly the students concerned, `--check` previews:
  `tests/classroom/test_roster.py`
- every broker holding every tenant with exactly the designed rights and limits:
  `tests/classroom/test_tenants.py`
- secrets as each student (every file a student can read holds their own password only),
  the config files' content, `-vvv` output of a re-run and of `--check --diff`:
  `tests/classroom/test_secrets.py` (the root-level audit of every node is a table above)
- worker `kill -9` brought back by systemd, unit hardening (exposure <= 2.0):
  `tests/classroom/test_worker.py`
- a 45 MB word count with a worker Pi killed mid-job: `tests/classroom/test_jobs.py`
- malformed messages, retry/dead-letter, SIGTERM drain, broker restart, cancel, timeout
  against a private broker: `tests/integration/`
- one student flooding every queue they may have, with the broker's memory and disk
  alarms 4 x the vhost's bound above its use: no alarm, another student's job exact,
  and the same flood without caps fires the alarm: `tests/integration/test_flood.py`
  (its figures on its output, `-s`; 3.10 and 4.0 in `roles/pimq_broker/README.md`)
- one student's job filling every Pi gives way to another student's short job:
  `tests/classroom/test_stop.py`
"""


def render(command: str) -> str:
    lines = [
        "# pimq chaos and security suite: figures",
        "",
        f"- command: `{command}` (CHAOS_JOBS={os.environ.get('CHAOS_JOBS', '10')})",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- machine: {_machine()}",
        "",
    ]
    for section, rows in ROWS.items():
        columns: list[str] = []
        for _, values in rows:
            columns += [c for c in values if c not in columns]
        lines += [f"## {section}", ""]
        lines.append("| " + " | ".join(["", *columns]) + " |")
        lines.append("|" + "---|" * (len(columns) + 1))
        for label, values in rows:
            cells = [label, *[str(values.get(c, "")) for c in columns]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if section in NOTES:
            lines += [NOTES[section], ""]
    return "\n".join([*lines, ELSEWHERE])
