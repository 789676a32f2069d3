"""Security extras: what the management API shows a student; the worker's sandbox.

The sandbox check goes beyond reading the unit's properties: every sandbox setting of
the installed unit's [Service] section (``systemctl cat pimq-worker``: User, Protect*,
StateDirectory, SystemCallFilter, ...) is copied onto a transient unit
(``systemd-run --wait --pipe``) that tries to write in a few places. Only the state
directory (and the unit's private /tmp) may take a write. Entering the running
worker's own namespace is not possible here (``nsenter -t MAINPID -m`` is refused
inside the containers), so this probes an identical sandbox, not the worker process.
"""

from __future__ import annotations

import re

import figures
import jobs
import nodes
import pytest
import requests

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SANDBOX = (
    "User",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "ReadWritePaths",
    "StateDirectory",
    "NoNewPrivileges",
)
# places the worker must not write to
FORBIDDEN = ("/etc/pimq", "/opt/pimq", "/usr/local/bin", "/var/log", "/home", "/root")
NOT_SANDBOX = ("Type", "ExecStart", "Restart", "RestartSec", "Environment")
PROBE = (
    'for p in "$@"; do if ( : > "$p/.chaos-probe" ) 2>/dev/null; '
    'then rm -f "$p/.chaos-probe"; echo "$p yes"; else echo "$p no"; fi; done'
)


def sandbox_settings(node: str) -> list[str]:
    unit = nodes.on_node(node, ["systemctl", "cat", "pimq-worker.service"]).stdout
    settings, section = [], None
    for line in unit.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif (
            section == "[Service]"
            and "=" in line
            and not line.startswith("#")
            and line.split("=", 1)[0] not in NOT_SANDBOX
        ):
            settings.append(line)
    return settings


def probe_writes(node: str, places: list[str]) -> dict[str, bool]:
    props = [a for s in sandbox_settings(node) for a in ("-p", s)]
    # systemd expands $ in command lines: $$ is a literal $
    out = nodes.on_node(
        node,
        ["systemd-run", "--wait", "--pipe", "--collect", "-q", *props, "/bin/sh", "-c",
         PROBE.replace("$", "$$"), "probe", *places],
    ).stdout  # fmt: skip
    return {line.rsplit(" ", 1)[0]: line.endswith(" yes") for line in out.splitlines()}


def test_management_api_shows_a_student_only_their_vhost(converged: nodes.Room, creds) -> None:
    room = converged
    url = f"http://{room.ips[room.head]}:15672/api"
    problems = []
    for name in jobs.STUDENTS:
        auth = (name, creds.students[name])
        vhosts = requests.get(f"{url}/vhosts", auth=auth, timeout=15)
        queues = requests.get(f"{url}/queues", auth=auth, timeout=15)
        seen_v = {v["name"] for v in vhosts.json()} if vhosts.ok else set()
        seen_q = {q["vhost"] for q in queues.json()} if queues.ok else set()
        other = requests.get(
            f"{url}/queues/{'alice' if name != 'alice' else 'bob'}", auth=auth, timeout=15
        )
        figures.add(
            "Management API as each student",
            name,
            **{
                "/api/vhosts": f"{vhosts.status_code} {sorted(seen_v)}",
                "vhosts of /api/queues": sorted(seen_q),
                "another student's /api/queues/VHOST": other.status_code,
            },
        )
        if not seen_v <= {name} or not seen_q <= {name} or other.ok:
            problems.append(f"{name}: vhosts {seen_v}, queues in {seen_q}, other {other}")
    assert not problems, "\n".join(problems)


def test_worker_sandbox(converged: nodes.Room) -> None:
    room = converged
    problems = []
    for node in room.workers:
        jobs.wait_worker_active(node)
        props = jobs.worker_props(node, *SANDBOX)
        out = nodes.on_node(
            node, ["systemd-analyze", "security", "pimq-worker.service", "--no-pager"]
        ).stdout
        found = re.search(r"Overall exposure level for pimq-worker.service: ([0-9.]+) (\S+)", out)
        exposure = f"{found.group(1)} {found.group(2)}" if found else "?"
        state = "/var/lib/" + props["StateDirectory"].split()[0] if props["StateDirectory"] else ""
        places = [*FORBIDDEN, state, "/tmp"]
        result = probe_writes(node, places)
        writable = [p for p in places if result.get(p)]
        if set(result) != set(places) or not result.get(state):
            problems.append(f"{node}: the probe did not run as expected: {result}")
        figures.add(
            "Worker sandbox (pimq-worker.service)",
            node,
            **{
                "systemd-analyze exposure": exposure,
                "ProtectSystem": props["ProtectSystem"],
                "ReadWritePaths": props["ReadWritePaths"] or "-",
                "StateDirectory": props["StateDirectory"] or "-",
                "writable (probed in an identical sandbox)": ", ".join(writable) or "none",
            },
        )
        if not found:
            problems.append(f"{node}: no exposure figure in:\n{out}")
        allowed = {state, "/tmp"}
        if set(writable) - allowed:
            problems.append(f"{node}: worker can write to {sorted(set(writable) - allowed)}")
    assert not problems, "\n".join(problems)
