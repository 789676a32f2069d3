"""A real classroom's network, simulated: the rate of every node's link.

    make classroom LINK=gigabit|100mbit|wifi     (default: unshaped)

Each node's link is shaped in both directions with ``tbf`` (a token bucket):
traffic *to* the node on the host side of its veth (the veth's egress), and
traffic *from* the node on its own interface, ``eth0`` (entered from the host with
``nsenter``: nothing is installed in the node). The head's link is shaped
like the others, and since every job, result and dataset goes through the
broker on the head, the head's link is the room's bottleneck, as in a real
room.

Profiles (rates only: this kernel has ``tbf`` and ``htb`` but no ``netem``,
and no ingress policing either, so there is no delay, jitter or loss):

=========  =================================================================
gigabit    1000 Mbit/s per link (a wired room with a gigabit switch)
100mbit    100 Mbit/s per link (a Pi 3's Ethernet; the head's too)
wifi       40 Mbit/s per link: a lower rate, shared in effect because all
           traffic crosses the head's link (802.11n in a busy room)
=========  =================================================================

Stdlib only, like classroom.py.
"""

from __future__ import annotations

import re
import subprocess

#: profile -> (rate, tbf burst)
PROFILES = {
    "gigabit": ("1000mbit", "512kb"),
    "100mbit": ("100mbit", "64kb"),
    "wifi": ("40mbit", "32kb"),
}
LATENCY = "50ms"  # how long a packet may wait in the bucket's queue before it is dropped


class LinkError(Exception):
    pass


def _run(*args: str, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LinkError(f"`{' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def node_link(container: str) -> str:
    """The node's one network interface: eth0 as it starts, another name once
    the chaos suite has taken it off the network and back (docker network
    disconnect + connect)."""
    names = _run("docker", "exec", container, "ls", "/sys/class/net").split()
    links = [n for n in names if n != "lo"]
    if len(links) != 1:
        raise LinkError(f"{container} has {len(links)} network interfaces ({links}), not one")
    return links[0]


def host_veth(container: str, inside: str) -> str:
    """The host side of the node's interface ``inside`` (by its peer's index)."""
    peer = _run("docker", "exec", container, "cat", f"/sys/class/net/{inside}/iflink")
    for line in _run("ip", "-o", "link", "show", "type", "veth").splitlines():
        match = re.match(r"^(\d+):\s+([^@:\s]+)", line)
        if match and match.group(1) == peer:
            return match.group(2)
    raise LinkError(f"no host veth with index {peer} for {container}")


def container_pid(container: str) -> str:
    return _run("docker", "inspect", "-f", "{{.State.Pid}}", container)


def _tbf(prefix: list[str], dev: str, profile: str | None) -> None:
    _run(*prefix, "tc", "qdisc", "del", "dev", dev, "root", check=False)
    if profile is None:
        return
    rate, burst = PROFILES[profile]
    _run(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
         "rate", rate, "burst", burst, "latency", LATENCY)  # fmt: skip


def shape(container: str, profile: str | None) -> str:
    """Shape (or, with None, unshape) the container's link both ways; what was done."""
    if profile is not None and profile not in PROFILES:
        raise LinkError(f"LINK={profile}: choose one of {', '.join(PROFILES)} (or none)")
    inside = node_link(container)
    veth = host_veth(container, inside)
    _tbf([], veth, profile)
    _tbf(["nsenter", "-t", container_pid(container), "-n"], inside, profile)
    return f"{container}: {PROFILES[profile][0] if profile else 'unshaped'} ({veth}, {inside})"


def shown(container: str) -> tuple[str, str]:
    """``tc qdisc show`` of the host veth and the node's own side (for tests and status)."""
    link = node_link(container)
    veth = host_veth(container, link)
    inside = ["nsenter", "-t", container_pid(container), "-n"]
    return (
        _run("tc", "qdisc", "show", "dev", veth, "root"),
        _run(*inside, "tc", "qdisc", "show", "dev", link, "root"),
    )
