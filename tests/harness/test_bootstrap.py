"""`make bootstrap` on a room fresh from the imager (tools/bootstrap.py).

A room of its own (prefix pimqboot: a bookworm head and a trixie Pi), brought
up with ``--imager``: the `pi` user has a password and no key, no host key is
recorded. The bootstrap records the host keys (fingerprints shown), logs in
with the password over paramiko, installs the admin's key and turns password
login off; after it, Ansible reaches every node with the key alone and the
password is refused. A changed host key stops it before anything is sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
import yaml
from support import nodes

REPO = nodes.REPO
CLASSROOM = [sys.executable, str(REPO / "tests/harness/classroom.py")]
BOOTSTRAP = [sys.executable, str(REPO / "tools/bootstrap.py")]
PREFIX = "pimqboot"
pytestmark = pytest.mark.timeout(600)


def sh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, check=False, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    return proc


class Fresh:
    def __init__(self, inventory: Path) -> None:
        self.inventory = inventory
        self.password_file = REPO / ".classroom" / PREFIX / "imager-password"
        self.password = self.password_file.read_text().splitlines()[0]
        hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
        self.key = Path(hosts["all"]["vars"]["ansible_ssh_private_key_file"])
        self.ips = {
            name: h["ansible_host"]
            for group in hosts["all"]["children"].values()
            for name, h in group["hosts"].items()
        }

    def bootstrap(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return sh(
            *BOOTSTRAP, str(self.inventory), "--yes", "--password-file", str(self.password_file),
            *extra, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def by_password(self, node: str) -> bool:
        """Whether sshd lets ``pi`` in with the imager password (host key not checked:
        this probes sshd's settings only)."""
        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            ssh.connect(
                self.ips[node], username="pi", password=self.password,
                look_for_keys=False, allow_agent=False, timeout=10,
            )  # fmt: skip
            return True
        except paramiko.AuthenticationException:
            return False
        finally:
            ssh.close()

    def by_key(self, node: str) -> subprocess.CompletedProcess[str]:
        return sh(
            "ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", f"UserKnownHostsFile={self.inventory / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", f"pi@{self.ips[node]}", "hostname",
            check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fresh]:
    inventory = tmp_path_factory.mktemp("boot") / "inv"
    where = ["--prefix", PREFIX, "--inventory", str(inventory)]
    try:
        sh(*CLASSROOM, "up", *where, "--workers", "1", "--releases", "bookworm,trixie", "--imager")
        yield Fresh(inventory)
    finally:
        sh(*CLASSROOM, "down", *where, check=False)


def own_host_keys(node: str) -> set[str]:
    out = sh("docker", "exec", f"{PREFIX}-{node}", "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub")
    return {" ".join(line.split()[:2]) for line in out.stdout.splitlines()}


def password_attempts(node: str) -> int:
    journal = sh("docker", "exec", f"{PREFIX}-{node}", "journalctl", "-u", "ssh", "-o", "cat")
    return sum(
        1 for line in journal.stdout.splitlines() if "password for" in line and " pi " in line
    )


def test_a_changed_host_key_stops_the_bootstrap_before_anything_is_sent(
    fresh: Fresh, tmp_path: Path
) -> None:
    known = fresh.inventory / "known_hosts"
    assert not known.exists()  # as from the imager: nothing recorded
    head_ip = fresh.ips["head"]
    impostor = sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "x"))
    assert impostor.returncode == 0
    fake = (tmp_path / "x.pub").read_text().split()[:2]
    known.write_text(f"{head_ip} {' '.join(fake)}\n")
    before = password_attempts("head")
    out = fresh.bootstrap()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "KEY CHANGED" in out.stdout and "nothing was sent to any Pi" in out.stderr
    assert password_attempts("head") == before  # no password was tried on it
    keys = sh(
        "docker", "exec", f"{PREFIX}-head", "sh", "-c", "cat ~pi/.ssh/authorized_keys", check=False
    )
    assert keys.stdout == "", keys.stdout  # and no key went in
    known.unlink()


def test_bootstrap_turns_imager_pis_into_key_only_nodes(fresh: Fresh) -> None:
    for node in fresh.ips:  # as from the imager: the password works, the key does not
        assert fresh.by_password(node), node
        assert fresh.by_key(node).returncode != 0, node

    out = fresh.bootstrap()
    assert out.returncode == 0, out.stdout + out.stderr
    assert fresh.password not in out.stdout + out.stderr
    for node, ip in fresh.ips.items():
        assert f"{node} ({ip}): SHA256:" in out.stdout, out.stdout  # fingerprints shown
        assert f"{node} ({ip}): key installed for pi, host name {node}, password login off" in (
            out.stdout
        )
    recorded: dict[str, set[str]] = {}
    for line in (fresh.inventory / "known_hosts").read_text().splitlines():
        if line and not line.startswith("#"):
            host, kind, key = line.split()[:3]
            recorded.setdefault(host, set()).add(f"{kind} {key}")
    assert recorded == {ip: own_host_keys(node) for node, ip in fresh.ips.items()}

    for node in fresh.ips:
        got = fresh.by_key(node)
        assert got.returncode == 0 and got.stdout.strip() == node, (node, got.stderr)
        assert not fresh.by_password(node), f"{node} still takes the password"
    # Ansible, as make deploy runs it, reaches every node with the key alone.
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    ping = sh(
        str(nodes.VENV_BIN / "ansible"), "all", "-i", str(fresh.inventory),
        "-m", "ansible.builtin.ping", env=env,
    )  # fmt: skip
    assert sorted(ln.split(" | ")[0] for ln in ping.stdout.splitlines() if " | SUCCESS" in ln) == (
        sorted(fresh.ips)
    ), ping.stdout
    assert ping.stdout.count("pong") == len(fresh.ips), ping.stdout

    again = fresh.bootstrap()
    assert again.returncode == 0, again.stdout + again.stderr
    for node in fresh.ips:
        assert f"{node} ({fresh.ips[node]}): recorded, unchanged" in again.stdout
        assert "refuses the password already: left alone" in again.stdout
