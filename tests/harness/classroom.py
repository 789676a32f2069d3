#!/usr/bin/env python3
"""The simulated classroom: Docker containers standing in for Raspberry Pis.

    classroom.py up [--workers N]    bring it up (or reuse it), write the inventory
    classroom.py down                remove containers, network, inventory and keys
    classroom.py status              what is running

Every node is Debian bookworm with systemd as PID 1, sshd, sudo and a `pi`
user holding the harness key, on a private Docker network where each node
resolves every other by name. Ansible reaches the nodes over SSH exactly as it
reaches real Pis: `inventory/local/` is written for that.

Stdlib only: it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LABEL = "pimq.classroom"

# Students of the simulated room; each logs in with the harness key.
ROSTER = [
    ("alice", "Alice Liddell"),
    ("bob", "Bob Cratchit"),
    ("carol", "Carol Danvers"),
]


class ClassroomError(Exception):
    """Something a newcomer can fix; the message says how."""


@dataclass(frozen=True)
class Room:
    """Names of one simulated classroom's parts (several may coexist)."""

    prefix: str
    inventory: Path

    @property
    def network(self) -> str:
        return f"{self.prefix}-classroom"

    @property
    def state(self) -> Path:
        return REPO / ".classroom" / self.prefix

    @property
    def key(self) -> Path:
        return self.state / "id_ed25519"

    def container(self, node: str) -> str:
        return f"{self.prefix}-{node}"


def run(*args: str, check: bool = True, capture: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(args, text=True, capture_output=capture, input=input, check=False)
    if check and proc.returncode != 0:
        raise ClassroomError(f"`{' '.join(args)}` failed: {(proc.stderr or '').strip()}")
    return (proc.stdout or "").strip()


def docker(*args: str, check: bool = True, input: str | None = None) -> str:
    return run("docker", *args, check=check, input=input)


def say(msg: str) -> None:
    print(f"\033[1m[classroom]\033[0m {msg}", file=sys.stderr, flush=True)


def ensure_engine() -> None:
    try:
        ok = subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        ok = False
    if not ok:
        raise ClassroomError("no Docker engine answers: run 'make setup' (as root) first")


def node_names(workers: int) -> list[str]:
    return ["head"] + [f"pi{i}" for i in range(1, workers + 1)]


def existing(room: Room) -> dict[str, dict]:
    """Containers of this room that exist (running or not), by node name."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={room.prefix}").split()
    found = {}
    for info in json.loads(docker("inspect", *ids)) if ids else []:
        found[info["Config"]["Labels"]["pimq.node"]] = info
    return found


def check_name_clash(room: Room, nodes: list[str]) -> None:
    for node in nodes:
        name = room.container(node)
        out = docker(
            "ps", "-a", "--filter", f"name=^{name}$", "--format", '={{.Label "' + LABEL + '"}}'
        )
        if out and out != f"={room.prefix}":
            raise ClassroomError(
                f"a container named {name} exists and is not part of this classroom: "
                f"remove it (docker rm -f {name}) or choose another prefix (PIMQ_CLASSROOM=...)"
            )
    nets = docker(
        "network",
        "ls",
        "--filter",
        f"name=^{room.network}$",
        "--format",
        '={{.Label "' + LABEL + '"}}',
    )
    if nets and nets != f"={room.prefix}":
        raise ClassroomError(
            f"a Docker network named {room.network} exists and is not ours: "
            "remove it or choose another prefix"
        )


def ensure_key(room: Room) -> str:
    room.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not room.key.exists():
        run(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"pimq-harness-{room.prefix}",
            "-f",
            str(room.key),
        )
    return room.key.with_suffix(".pub").read_text().strip()


def systemd_flags() -> list[str]:
    """What systemd as PID 1 needs, without --privileged (see DESIGN.md)."""
    flags = [
        "--cap-add", "SYS_ADMIN",
        "--security-opt", "seccomp=unconfined",
        "--security-opt", "apparmor=unconfined",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    ]  # fmt: skip
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():  # cgroup v2 only
        flags += ["--cgroupns", "host"]
    return flags


def start_node(room: Room, node: str, image: str) -> None:
    docker(
        "run", "-d", "--name", room.container(node), "--hostname", node,
        "--network", room.network, "--network-alias", node,
        "--label", f"{LABEL}={room.prefix}", "--label", f"pimq.node={node}",
        *systemd_flags(), image,
    )  # fmt: skip


def wait_booted(room: Room, node: str, timeout: float = 90) -> None:
    name = room.container(node)
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False)
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    if state != "running":
        failed = docker(
            "exec", name, "systemctl", "--failed", "--no-legend", "--plain", check=False
        )
        raise ClassroomError(
            f"{name} did not boot cleanly (systemd: {state or 'no answer'}); failed units: {failed}"
        )


def authorize(room: Room, node: str, pubkey: str) -> None:
    docker(
        "exec", "-i", room.container(node), "sh", "-c",
        "umask 077; cat > ~pi/.ssh/authorized_keys && chown pi:pi ~pi/.ssh/authorized_keys",
        input=pubkey + "\n",
    )  # fmt: skip


# How the harness (and Ansible) talk SSH to nodes that are born anew often.
SSH_OPTIONS = " ".join(
    [
        "-o StrictHostKeyChecking=no",
        "-o UserKnownHostsFile=/dev/null",
        "-o LogLevel=ERROR",
        "-o ConnectTimeout=5",
    ]
)


def ssh_args(room: Room) -> list[str]:
    return ["-i", str(room.key), "-o", "BatchMode=yes", *SSH_OPTIONS.split()]


def wait_ssh(room: Room, ip: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = subprocess.run(
            ["ssh", *ssh_args(room), f"pi@{ip}", "true"], capture_output=True, check=False
        )
        if ok.returncode == 0:
            return
        time.sleep(1)
    raise ClassroomError(f"sshd on {ip} does not let the harness in after {timeout:.0f} s")


def address(room: Room, node: str) -> str:
    fmt = '{{(index .NetworkSettings.Networks "' + room.network + '").IPAddress}}'
    return docker("inspect", "-f", fmt, room.container(node))


def write_inventory(room: Room, ips: dict[str, str], pubkey: str) -> None:
    """inventory/local: the simulated room, reached over SSH as real Pis are."""

    def host_block(nodes: list[str]) -> str:
        return "".join(f"        {n}:\n          ansible_host: {ips[n]}\n" for n in nodes)

    workers = [n for n in ips if n != "head"]
    hosts = (
        "# Generated by tests/harness/classroom.py: the simulated classroom. Do not edit.\n"
        "all:\n"
        "  vars:\n"
        "    ansible_user: pi\n"
        f"    ansible_ssh_private_key_file: {room.key}\n"
        f"    ansible_ssh_common_args: \"{SSH_OPTIONS}\"\n"
        "    ansible_python_interpreter: /usr/bin/python3\n"
        "  children:\n"
        "    head:\n      hosts:\n" + host_block(["head"]) +
        "    workers:\n      hosts:\n" + host_block(workers)
    )  # fmt: skip
    roster = "".join(
        f'  - name: {name}\n    full_name: {full}\n    ssh_key: "{pubkey}"\n    state: present\n'
        for name, full in ROSTER
    )
    group_vars = (
        "# Generated by tests/harness/classroom.py: the simulated classroom. Do not edit.\n"
        "# Every student logs in with the harness key, so tests can act as them.\n"
        "pimq_students:\n" + roster
    )
    (room.inventory / "group_vars").mkdir(parents=True, exist_ok=True)
    (room.inventory / "hosts.yml").write_text(hosts)
    (room.inventory / "group_vars" / "all.yml").write_text(group_vars)


def up(room: Room, workers: int) -> None:
    ensure_engine()
    nodes = node_names(workers)
    check_name_clash(room, nodes)
    built = subprocess.run(
        [str(REPO / "tests/harness/image.sh")], stdout=subprocess.PIPE, text=True, check=False
    )
    if built.returncode != 0:
        raise ClassroomError("the node image could not be built (see above)")
    image = built.stdout.split()[-1]
    image_id = docker("image", "inspect", "-f", "{{.Id}}", image)
    pubkey = ensure_key(room)
    if not docker("network", "ls", "-q", "--filter", f"name=^{room.network}$"):
        docker("network", "create", "--label", f"{LABEL}={room.prefix}", room.network)
    have = existing(room)
    for node, info in have.items():
        if node not in nodes or info["Image"] != image_id:
            say(
                f"removing {room.container(node)} "
                f"({'not wanted' if node not in nodes else 'image changed'})"
            )
            docker("rm", "-f", room.container(node))
    have = existing(room)
    for node in nodes:
        if node not in have:
            say(f"starting {room.container(node)}")
            start_node(room, node, image)
        elif not have[node]["State"]["Running"]:
            say(f"restarting {room.container(node)}")
            docker("start", room.container(node))
    ips = {}
    for node in nodes:
        wait_booted(room, node)
        authorize(room, node, pubkey)
        ips[node] = address(room, node)
        wait_ssh(room, ips[node])
    write_inventory(room, ips, pubkey)
    say(f"up: {', '.join(f'{n}={ips[n]}' for n in nodes)}; inventory in {room.inventory}")


def down(room: Room) -> None:
    ensure_engine()
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={room.prefix}").split()
    if ids:
        docker("rm", "-f", "-v", *ids)
    if docker("network", "ls", "-q", "--filter", f"label={LABEL}={room.prefix}"):
        docker("network", "rm", room.network)
    for path in (room.inventory / "hosts.yml", room.inventory / "group_vars" / "all.yml"):
        path.unlink(missing_ok=True)
    for d in (room.inventory / "group_vars", room.inventory):
        if d.exists() and not any(d.iterdir()):
            d.rmdir()
    for f in (room.key, room.key.with_suffix(".pub")):
        f.unlink(missing_ok=True)
    if room.state.exists() and not any(room.state.iterdir()):
        room.state.rmdir()
    say(f"down: {len(ids)} node(s) removed")


def status(room: Room) -> None:
    ensure_engine()
    for node, info in sorted(existing(room).items()):
        state = "running" if info["State"]["Running"] else info["State"]["Status"]
        ip = address(room, node) if state == "running" else ""
        print(f"{node:8} {room.container(node):16} {state:10} {ip}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WORKERS", "3")),
        help="worker Pis besides the head (default: $WORKERS or 3)",
    )
    p.add_argument(
        "--prefix",
        default=os.environ.get("PIMQ_CLASSROOM", "pimq"),
        help="name prefix of containers and network (default: $PIMQ_CLASSROOM or pimq)",
    )
    p.add_argument(
        "--inventory",
        type=Path,
        default=REPO / "inventory" / "local",
        help="where the generated inventory goes (default: inventory/local)",
    )
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    room = Room(args.prefix, args.inventory.resolve())
    try:
        {
            "up": lambda: up(room, args.workers),
            "down": lambda: down(room),
            "status": lambda: status(room),
        }[args.action]()
    except ClassroomError as e:
        print(f"\033[1;31m[classroom] error:\033[0m {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
