"""pimq-worker runs hardened on every worker and systemd brings it back after kill -9."""

from __future__ import annotations

import re

import pytest
from support import nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(1800)]

HARDENING = {
    "User": "pimq",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "CapabilityBoundingSet": "",
    "Restart": "on-failure",
}


def show(node: str, *props: str) -> dict[str, str]:
    out = nodes.on_node(
        node, ["systemctl", "show", "pimq-worker.service", *[f"--property={p}" for p in props]]
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_worker_active_and_hardened_everywhere(converged, room):
    for node in room.workers:
        props = show(node, "ActiveState", "ExecStart", *HARDENING)
        assert props["ActiveState"] == "active", (node, props)
        assert "/opt/pimq/venv/bin/pimq worker --config /etc/pimq/worker.yaml" in props["ExecStart"]
        for key, want in HARDENING.items():
            assert sorted(props[key].split()) == sorted(want.split()), (node, key, props[key])
        out = nodes.on_node(
            node, ["systemd-analyze", "security", "pimq-worker.service", "--no-pager"]
        ).stdout
        exposure = float(
            re.search(r"Overall exposure level for pimq-worker.service: ([0-9.]+)", out).group(1)
        )
        print(f"{node}: systemd-analyze security exposure {exposure}")
        assert exposure <= 2.0, out


def test_worker_comes_back_after_kill_9(converged, room):
    for node in room.workers:
        pid = show(node, "MainPID")["MainPID"]
        assert pid != "0"
        nodes.on_node(node, ["kill", "-9", pid])

        def back(node=node, pid=pid) -> bool:
            p = show(node, "MainPID", "ActiveState")
            return p["ActiveState"] == "active" and p["MainPID"] not in ("0", pid)

        nodes.wait_for(back, timeout=30, what=f"pimq-worker back on {node}")


def test_cli_installed_for_students_on_the_head(converged, room):
    name = room.students[0]
    out = nodes.ssh(room, name, "command -v pimq && pimq --help").stdout
    assert "/usr/local/bin/pimq" in out
