"""Host keys (issue 14): every run checks each node's SSH host key against the
room's known_hosts; a node whose key changed stops the run before anything is sent
to it, with a message that says what to do; make known-hosts records the new key."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from support import nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(1800)]

WATCHED = "/etc /opt /home /root /var/lib/pimq /usr/local"


def fingerprint(node: str) -> str:
    """SHA256 fingerprint of the node's ed25519 host key, read inside the node."""
    out = nodes.on_node(node, "ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_ed25519_key.pub")
    return out.stdout.split()[1]


def wait_sshd(node: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = nodes.on_node(node, "systemctl is-active ssh", check=False)
        if up.stdout.strip() == "active":
            return
        time.sleep(1)
    raise AssertionError(f"sshd on {node} did not come back")


def test_a_changed_host_key_stops_the_run_before_anything_is_sent(
    room, converged, converge_vars, tmp_path
):
    node = room.workers[0]
    container = nodes.container(node)
    old = fingerprint(node)
    ip = room.ips[node]
    # The node is re-imaged (new host keys) and boots: what a swapped SD card, or
    # another machine at its address, looks like to the control machine.
    nodes.on_node(node, "rm -f /etc/ssh/ssh_host_*")
    subprocess.run(["docker", "restart", container], check=True, capture_output=True)
    wait_sshd(node)
    new = fingerprint(node)
    assert new != old
    ip_now = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         container], check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert ip_now == ip, "the node came back at another address: the test would prove nothing"
    nodes.on_node(node, "touch /run/pimq-before-run && sleep 1")
    since = nodes.on_node(node, "date +%s").stdout.strip()
    tool = [sys.executable, str(nodes.REPO / "tools" / "known_hosts.py"), str(nodes.INVENTORY)]
    try:
        # A fresh SSH control folder: no master connection from earlier runs.
        run = nodes.playbook(
            "site.yml",
            extra_vars=converge_vars,
            env={"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")},
        )
        assert run.rc != 0, run.tail()
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in run.output, run.tail(80)
        assert f"{node}: not reached, nothing was sent to it - its SSH host key" in run.output
        assert f"make known-hosts INVENTORY={nodes.INVENTORY} REPLACE={node}" in run.output
        assert f"fatal: [{node}]: UNREACHABLE!" in run.output
        assert "Preflight stopped the run, nothing was changed" in run.output
        assert run.total("changed") == 0, run.recap  # no node changed, the others neither

        # Nothing reached the node: no login during the run, no file written.
        # By sshd's syslog identifier, not its unit: journald names the unit from the
        # sender's cgroup, and a pre-auth child that has exited already has none; and
        # the lines may reach the journal a moment after the run has ended.
        def sshd_log() -> str:
            out = nodes.on_node(node, f"journalctl -t sshd --no-pager -o cat --since @{since}")
            return out.stdout if "[preauth]" in out.stdout else ""

        logins = nodes.wait_for(sshd_log, timeout=20, what=f"sshd's log of the run on {node}")
        assert "Connection closed by" in logins and "[preauth]" in logins, logins
        assert "Accepted publickey" not in logins, logins
        written = nodes.on_node(
            node, f"find {WATCHED} -xdev -newer /run/pimq-before-run 2>/dev/null || true"
        ).stdout.split()
        assert written == [], written

        # make known-hosts sees the change and refuses to write without REPLACE.
        refused = subprocess.run([*tool, "--yes"], capture_output=True, text=True, check=False)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"{node} ({ip}): KEY CHANGED" in refused.stdout
        assert new in refused.stdout and old in refused.stdout
        assert f"--replace {node}" in refused.stderr
    finally:
        # The admin checked the new fingerprint on the Pi's own screen: record it.
        replaced = subprocess.run(
            [*tool, "--yes", "--replace", node], capture_output=True, text=True, check=False
        )
        assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert f"{node} ({ip}): replaced by {new}" in replaced.stdout
    # With the new key recorded the run reaches it again (the checks, and the status
    # of every broker and worker: the node's services came back with its reboot).
    again = nodes.playbook(
        "site.yml", "--tags", "status", extra_vars=converge_vars,
        env={"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")},
    )  # fmt: skip
    assert again.rc == 0, again.tail(80)
    assert again.recap[node]["unreachable"] == 0 and again.recap[node]["failed"] == 0

    def services() -> bool:
        out = nodes.on_node(node, "systemctl is-active rabbitmq-server pimq-worker", check=False)
        return out.stdout.split() == ["active", "active"]

    nodes.wait_for(services, timeout=60, what=f"rabbitmq-server and pimq-worker on {node}")
