"""The simulated classroom behaves like a room of Pis reached over SSH.

These tests bring the default classroom up (or reuse it) and check what the
rest of the suite relies on; the teardown and clash tests use rooms of their
own, with another prefix, so they never disturb it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLASSROOM = [sys.executable, str(REPO / "tests/harness/classroom.py")]
pytestmark = pytest.mark.timeout(600)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    return proc


def labelled(prefix: str, kind: str) -> list[str]:
    listing = ["network", "ls"] if kind == "network" else ["ps", "-a"]
    return sh("docker", *listing, "-q", "--filter", f"label=pimq.classroom={prefix}").stdout.split()


@pytest.fixture(scope="module")
def inventory() -> dict[str, str]:
    """The default classroom, up; host name → address from inventory/local."""
    sh(*CLASSROOM, "up")
    hosts = yaml.safe_load((REPO / "inventory/local/hosts.yml").read_text())
    groups = hosts["all"]["children"]
    return {
        name: host["ansible_host"]
        for group in ("head", "workers")
        for name, host in groups[group]["hosts"].items()
    }


def ansible(pattern: str, *args: str) -> dict[str, dict]:
    """Run an ad-hoc module through the inventory; per-host results."""
    env = {
        **os.environ,
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    }
    proc = subprocess.run(
        [str(REPO / ".venv/bin/ansible"), pattern, "-i", str(REPO / "inventory/local"), *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]


def test_inventory_has_one_head_and_the_workers(inventory: dict[str, str]) -> None:
    assert "head" in inventory
    assert sorted(n for n in inventory if n != "head") == ["pi1", "pi2", "pi3"]


def test_every_node_answers_ansible_over_ssh_as_pi_with_become(inventory: dict[str, str]) -> None:
    results = ansible("all", "-b", "-m", "ansible.builtin.command", "-a", "id -un")
    assert set(results) == set(inventory)
    for host, r in results.items():
        assert r["rc"] == 0 and r["stdout"] == "root", (host, r)
    # and it really is SSH, as the pi user, not docker exec
    results = ansible(
        "all", "-m", "ansible.builtin.command", "-a", "sh -c 'id -un; echo $SSH_CONNECTION'"
    )
    for host, r in results.items():
        user, connection = r["stdout_lines"]
        assert user == "pi" and connection.split()[2] == inventory[host], (host, r)


def test_systemd_is_pid1_and_healthy_everywhere(inventory: dict[str, str]) -> None:
    for node in inventory:
        name = f"pimq-{node}"
        assert sh("docker", "exec", name, "cat", "/proc/1/comm").stdout.strip() == "systemd"
        state = sh(
            "docker", "exec", name, "systemctl", "is-system-running", check=False
        ).stdout.strip()
        assert state == "running", (node, state)


def test_every_node_resolves_every_other_by_name(inventory: dict[str, str]) -> None:
    for node in inventory:
        for other, ip in inventory.items():
            got = sh("docker", "exec", f"pimq-{node}", "getent", "hosts", other).stdout.split()
            assert got and got[0] == ip, (node, other, got)


def test_second_up_reuses_the_running_nodes(inventory: dict[str, str]) -> None:
    before = {
        n: json.loads(sh("docker", "inspect", f"pimq-{n}").stdout)[0]["Id"] for n in inventory
    }
    sh(*CLASSROOM, "up")
    after = {n: json.loads(sh("docker", "inspect", f"pimq-{n}").stdout)[0]["Id"] for n in inventory}
    assert before == after


def test_teardown_leaves_nothing_behind(tmp_path: Path) -> None:
    prefix, inv = "pimqtd", tmp_path / "inv"
    sh(*CLASSROOM, "up", "--prefix", prefix, "--workers", "1", "--inventory", str(inv))
    assert len(labelled(prefix, "container")) == 2
    assert (inv / "hosts.yml").exists()
    assert (REPO / ".classroom" / prefix / "id_ed25519").exists()
    sh(*CLASSROOM, "down", "--prefix", prefix, "--inventory", str(inv))
    assert labelled(prefix, "container") == []
    assert labelled(prefix, "network") == []
    assert not inv.exists()
    assert not (REPO / ".classroom" / prefix).exists()


def test_a_foreign_container_with_our_name_is_refused_not_removed(tmp_path: Path) -> None:
    prefix = "pimqclash"
    sh("docker", "create", "--name", f"{prefix}-head", "pimq/pi-node:latest")
    try:
        proc = sh(
            *CLASSROOM, "up", "--prefix", prefix, "--inventory", str(tmp_path / "inv"), check=False
        )
        assert proc.returncode != 0
        assert (
            f"a container named {prefix}-head exists and is not part of this classroom"
            in proc.stderr
        )
        assert sh("docker", "inspect", f"{prefix}-head", check=False).returncode == 0
        assert not (tmp_path / "inv").exists()
    finally:
        sh("docker", "rm", "-f", f"{prefix}-head", check=False)
        sh(
            *CLASSROOM,
            "down",
            "--prefix",
            prefix,
            "--inventory",
            str(tmp_path / "inv"),
            check=False,
        )


def test_known_hosts_holds_each_nodes_own_host_keys(inventory: dict[str, str]) -> None:
    """Ansible checks host keys (StrictHostKeyChecking=yes) against inventory/local's
    known_hosts, which holds exactly the keys each node generated at its first boot."""
    prefix = os.environ.get("PIMQ_CLASSROOM", "pimq")
    hosts = yaml.safe_load((REPO / "inventory/local/hosts.yml").read_text())
    args = hosts["all"]["vars"]["ansible_ssh_common_args"]
    assert "-o StrictHostKeyChecking=yes" in args
    assert "-o UserKnownHostsFile={{ inventory_dir }}/known_hosts" in args
    recorded: dict[str, set[str]] = {}
    for line in (REPO / "inventory/local/known_hosts").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            host, kind, key = line.split()[:3]
            recorded.setdefault(host, set()).add(f"{kind} {key}")
    assert set(recorded) == set(inventory.values())
    for node, ip in inventory.items():
        own = sh(
            "docker", "exec", f"{prefix}-{node}", "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"
        )
        assert recorded[ip] == {" ".join(ln.split()[:2]) for ln in own.stdout.splitlines()}, node
