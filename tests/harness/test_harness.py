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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import debs
import pytest
import yaml
from support import nodes

REPO = nodes.REPO
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
def inventory(room: nodes.Room) -> dict[str, str]:
    """The simulated classroom every suite shares, up; host name → address from its
    inventory (inventory/local)."""
    return dict(room.ips)


def ansible(pattern: str, *args: str) -> dict[str, dict]:
    """Run an ad-hoc module through the inventory; per-host results."""
    env = {
        **os.environ,
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    }
    proc = subprocess.run(
        [str(nodes.VENV_BIN / "ansible"), pattern, "-i", str(nodes.INVENTORY), *args],
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
        name = nodes.container(node)
        assert sh("docker", "exec", name, "cat", "/proc/1/comm").stdout.strip() == "systemd"
        state = sh(
            "docker", "exec", name, "systemctl", "is-system-running", check=False
        ).stdout.strip()
        assert state == "running", (node, state)


def test_every_node_resolves_every_other_by_name(inventory: dict[str, str]) -> None:
    for node in inventory:
        name = nodes.container(node)
        for other, ip in inventory.items():
            got = sh("docker", "exec", name, "getent", "hosts", other).stdout.split()
            assert got and got[0] == ip, (node, other, got)


def test_second_up_reuses_the_running_nodes(inventory: dict[str, str]) -> None:
    def ids() -> dict[str, str]:
        return {
            n: json.loads(sh("docker", "inspect", nodes.container(n)).stdout)[0]["Id"]
            for n in inventory
        }

    before = ids()
    sh(*CLASSROOM, "up", "--prefix", nodes.PREFIX, "--inventory", str(nodes.INVENTORY))
    assert ids() == before


def test_teardown_leaves_nothing_behind(tmp_path: Path) -> None:
    prefix, inv = "pimqtd", tmp_path / "inv"
    down = [*CLASSROOM, "down", "--prefix", prefix, "--inventory", str(inv)]
    try:
        sh(
            *CLASSROOM, "up", "--prefix", prefix, "--workers", "1", "--releases", "bookworm",
            "--inventory", str(inv),
        )  # fmt: skip
    except AssertionError:
        sh(*down, check=False)  # a room that half came up is not left running
        raise
    names = sh(
        "docker", "ps", "--filter", f"label=pimq.classroom={prefix}", "--format", "{{.Names}}"
    )
    assert sorted(names.stdout.split()) == [f"{prefix}-{n}" for n in ("head", "mirror", "pi1")]
    assert (inv / "hosts.yml").exists()
    assert (REPO / ".classroom" / prefix / "id_ed25519").exists()
    sh(*down)
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


PROBE = """
import pytest


def test_passes_on_the_room(room):
    assert room.head == "head"


def test_fails_on_the_room(room):
    assert room.head == "not the head", "failing on purpose: its journals must be kept"


class TestOwnRoom:
    @pytest.fixture
    def room(self):
        return "a fake room of the test's own, as the unit tests have"

    def test_fails_with_its_own_room(self, room):
        assert room == "the simulated classroom"
"""


def test_a_failed_classroom_test_keeps_every_nodes_journal(
    inventory: dict[str, str], tmp_path: Path
) -> None:
    """The room plugin's pytest_runtest_makereport hook, in a pytest session of its own
    on this room: the failed test leaves one journal per node; the passed one, and the
    failed one whose ``room`` is a fixture of its own, leave nothing."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    artifacts = tmp_path / "artifacts"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "PIMQ_ARTIFACTS": str(artifacts)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "support.room", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-q", str(tmp_path / "test_probe.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 failed, 1 passed" in proc.stdout, proc.stdout
    kept = artifacts / "test_probe" / "test_fails_on_the_room"
    assert [p.name for p in (artifacts / "test_probe").iterdir()] == [kept.name]
    assert f"journals of {', '.join(inventory)} in {kept}" in proc.stdout, proc.stdout
    assert sorted(p.name for p in kept.iterdir()) == sorted(f"{n}.journal" for n in inventory)
    for node in inventory:
        journal = (kept / f"{node}.journal").read_text(errors="replace")
        assert " systemd[1]: " in journal and "not (fully) read" not in journal, journal[-500:]
        assert f" {node} " in journal.splitlines()[-1], (node, journal.splitlines()[-1])


def test_known_hosts_holds_each_nodes_own_host_keys(inventory: dict[str, str]) -> None:
    """Ansible checks host keys (StrictHostKeyChecking=yes) against inventory/local's
    known_hosts, which holds exactly the keys each node generated at its first boot."""
    prefix = os.environ.get("PIMQ_CLASSROOM", "pimq")
    hosts = yaml.safe_load((nodes.INVENTORY / "hosts.yml").read_text())
    args = hosts["all"]["vars"]["ansible_ssh_common_args"]
    assert "-o StrictHostKeyChecking=yes" in args
    assert "-o UserKnownHostsFile={{ inventory_dir }}/known_hosts" in args
    recorded: dict[str, set[str]] = {}
    for line in (nodes.INVENTORY / "known_hosts").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            host, kind, key = line.split()[:3]
            recorded.setdefault(host, set()).add(f"{kind} {key}")
    assert set(recorded) == set(inventory.values())
    for node, ip in inventory.items():
        own = sh(
            "docker", "exec", f"{prefix}-{node}", "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"
        )
        assert recorded[ip] == {" ".join(ln.split()[:2]) for ln in own.stdout.splitlines()}, node


def outside_addresses() -> dict[str, str]:
    """Addresses outside the room the host itself reaches: the Debian mirror its
    apt uses and its default gateway (what a node must not reach)."""
    found = {}
    sites = sh("apt-get", "indextargets", "--format", "$(SITE)").stdout.split()
    host = sites[0].split("/")[2] if sites else ""
    got = sh("getent", "ahostsv4", host, check=False).stdout.split() if host else []
    if got:
        found[f"the Debian mirror {host}"] = got[0]
    route = sh("ip", "-4", "route", "show", "default").stdout.split()
    if "via" in route:
        found["the host's gateway"] = route[route.index("via") + 1]
    assert found, "this machine knows no address outside the room to test against"
    return found


def connects(container: str, host: str, port: int) -> bool:
    """Whether a TCP connection from ``container`` to ``host``:``port`` opens within 5 s."""
    probe = f"exec 3<>/dev/tcp/{host}/{port}"
    out = sh("docker", "exec", container, "timeout", "5", "bash", "-c", probe, check=False)
    return out.returncode == 0


def test_no_node_reaches_outside_the_room_and_apt_reads_the_rooms_mirror(
    inventory: dict[str, str],
) -> None:
    network = f"{nodes.PREFIX}-classroom"
    internal = sh("docker", "network", "inspect", "-f", "{{.Internal}}", network).stdout
    assert internal.strip() == "true"
    outside = outside_addresses()
    wanted = debs.packages()
    # every probe at once: one that cannot connect waits its whole 5 s
    probes = [
        (node, what, ip)
        for node in inventory
        for what, ip in {"mirror": "mirror", **outside}.items()
    ]
    with ThreadPoolExecutor(len(probes)) as pool:
        opened = dict(
            zip(
                probes,
                pool.map(lambda p: connects(nodes.container(p[0]), p[2], 80), probes),
                strict=True,
            )
        )
    for node in inventory:
        name = nodes.container(node)
        assert opened[node, "mirror", "mirror"], node  # the probe works: the room's mirror answers
        for what, ip in outside.items():
            assert not opened[node, what, ip], f"{node} reaches {what} ({ip})"
        os_release = sh("docker", "exec", name, "cat", "/etc/os-release").stdout
        release = next(
            ln.split("=", 1)[1]
            for ln in os_release.splitlines()
            if ln.startswith("VERSION_CODENAME=")
        )
        mirror = f"http://mirror/{release}"
        sources = sh("docker", "exec", name, "cat", "/etc/apt/sources.list").stdout
        assert sources == f"deb [trusted=yes] {mirror} ./\n", node
        assert sh("docker", "exec", name, "ls", "/etc/apt/sources.list.d").stdout == "", node
        # every package the roles install is there, and comes from the mirror alone
        madison = sh("docker", "exec", name, "apt-cache", "madison", *wanted).stdout
        sources_of: dict[str, set[str]] = {}
        for line in madison.splitlines():
            package, _, source = (part.strip() for part in line.split("|"))
            sources_of.setdefault(package, set()).add(source.split()[0])
        assert sources_of == {p: {mirror} for p in wanted}, node
