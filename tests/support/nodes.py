"""Helpers to act on the simulated classroom: its nodes, its students, its playbooks.

Every suite that runs on the classroom (harness, classroom, chaos) imports it as
``from support import nodes``; the room itself, provisioned once per run, comes
from the fixtures of ``support.room``. Stdlib + PyYAML only.

Which room: ``PIMQ_INVENTORY`` (default ``inventory/local``, the one
``tests/harness/classroom.py`` writes) and ``PIMQ_CLASSROOM``, the prefix of its
containers (default ``pimq``).

Secrets rule for helpers and tests alike: a password may travel on stdin or in
this process's memory, never in a command line (ours would show up in ``ps``
on the nodes exactly like a leak of the playbooks would).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("PIMQ_CLASSROOM", "pimq")
INVENTORY = Path(os.environ.get("PIMQ_INVENTORY", REPO / "inventory" / "local")).resolve()
#: The harness's files for this room (its SSH key, the provisioning record).
STATE = REPO / ".classroom" / PREFIX
VENV_BIN = Path(sys.executable).parent
# Host keys checked as Ansible checks them: the room's known_hosts (the harness
# writes it from the keys the nodes generated).
SSH_OPTIONS = [
    "-o", f"UserKnownHostsFile={INVENTORY / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
]  # fmt: skip
RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.M,
)


def container(node: str) -> str:
    """Docker container of a classroom node (``head`` -> ``pimq-head``)."""
    return f"{PREFIX}-{node}"


@dataclass(frozen=True)
class Room:
    """What inventory/local says about the simulated classroom."""

    head: str
    workers: tuple[str, ...]
    ips: dict[str, str]
    key: Path
    roster: tuple[dict[str, Any], ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.head, *[w for w in self.workers if w != self.head])

    @property
    def students(self) -> tuple[str, ...]:
        return tuple(s["name"] for s in self.roster if s.get("state", "present") == "present")


def load_room(inventory: Path = INVENTORY) -> Room:
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())["all"]
    children = hosts["children"]
    ips: dict[str, str] = {}
    for group in children.values():
        for name, hv in (group.get("hosts") or {}).items():
            ips[name] = (hv or {}).get("ansible_host", name)
    group_vars = yaml.safe_load((inventory / "group_vars" / "all.yml").read_text()) or {}
    return Room(
        head=next(iter(children["head"]["hosts"])),
        workers=tuple(children["workers"]["hosts"]),
        ips=ips,
        key=Path(hosts["vars"]["ansible_ssh_private_key_file"]),
        roster=tuple(group_vars.get("pimq_students") or ()),
    )


# --- commands on nodes ----------------------------------------------------------------


def on_node(
    node: str,
    command: str | list[str],
    *,
    user: str | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command on a node (``docker exec``), as root or as ``user``.

    A string is run by ``sh -c``; a list is run as is.
    """
    argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
    docker = ["docker", "exec", *(["-i"] if input is not None else [])]
    if user:
        docker += ["-u", user, "-w", "/"]
    return _run([*docker, container(node), *argv], f"on {node}: {argv!r}", input, check, timeout)


def _run(argv: list[str], what: str, input: str | None, check: bool, timeout: float):
    proc = subprocess.run(
        argv, input=input, text=True, capture_output=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{what} failed rc={proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def ssh(
    room: Room,
    user: str,
    command: str,
    *,
    node: str | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Log in over SSH as ``user`` (a student: the harness key is in their roster entry)."""
    ip = room.ips[node or room.head]
    argv = ["ssh", "-i", str(room.key), *SSH_OPTIONS, f"{user}@{ip}", command]
    return _run(argv, f"ssh {user}@{node or room.head} {command!r}", input, check, timeout)


def run_python_as(room: Room, user: str, script: str, *args: str, timeout: float = 60):
    """Run a Python script (sent on stdin) as a student on the head, over SSH."""
    command = "python3 - " + " ".join(shlex.quote(a) for a in args)
    return ssh(room, user, command, input=script, check=False, timeout=timeout)


# --- playbooks ------------------------------------------------------------------------------


@dataclass
class PlaybookRun:
    args: list[str]
    rc: int
    output: str
    seconds: float

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        return {
            m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
            for m in RECAP_RE.finditer(self.output)
        }

    def total(self, key: str) -> int:
        return sum(h[key] for h in self.recap.values())

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def playbook(
    name: str = "site.yml",
    *args: str,
    extra_vars: dict[str, Any] | None = None,
    inventory: Path = INVENTORY,
    timeout: float = 1200,
    tmp_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> PlaybookRun:
    """Run ``playbooks/<name>`` against the classroom; output captured (stdout+stderr);
    `env` adds to its environment."""
    argv = [
        str(VENV_BIN / "ansible-playbook"),
        "-i",
        str(inventory),
        str(REPO / "playbooks" / name),
        *args,
    ]
    if extra_vars:
        directory = tmp_dir or (REPO / ".classroom" / PREFIX)
        directory.mkdir(parents=True, exist_ok=True)
        vars_file = directory / f"extra-vars-{os.getpid()}-{time.monotonic_ns()}.json"
        vars_file.write_text(json.dumps(extra_vars))
        argv += ["-e", f"@{vars_file}"]
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        **(env or {}),
    )
    start = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            cwd=REPO,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    finally:
        if extra_vars:
            vars_file.unlink(missing_ok=True)
    return PlaybookRun(argv, proc.returncode, proc.stdout, time.monotonic() - start)


# --- credentials (control machine) ----------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    admin: str
    worker: str
    students: dict[str, str]
    #: the monitor's (roles/pimq_monitor), by file: Prometheus' scrape login
    #: (prometheus), the page's login to Prometheus (page), each teacher's
    monitor: dict[str, str] = field(default_factory=dict)

    def all(self) -> list[str]:
        return [self.admin, self.worker, *self.students.values(), *self.monitor.values()]


def credentials(inventory: Path = INVENTORY) -> Credentials:
    base = inventory / "credentials"
    students = {p.stem: p.read_text().strip() for p in sorted((base / "students").glob("*.txt"))}
    return Credentials(
        admin=(base / "admin.txt").read_text().strip(),
        worker=(base / "pimq-worker.txt").read_text().strip(),
        students=students,
        monitor={
            p.stem: p.read_text().strip()
            for p in [
                base / "prometheus.txt",
                base / "page.txt",
                *sorted(base.glob("teachers/*.txt")),
            ]
            if p.exists()
        },
    )


# --- process-list sampling --------------------------------------------------------------------


@dataclass
class PsSampler:
    """Samples ``ps`` command lines on every node (and this machine) every ``interval`` s.

    One long-lived ``docker exec`` per node runs the loop inside the node, so sampling
    costs little. Keeps the distinct command lines seen; ``samples`` counts rounds.
    """

    nodes: tuple[str, ...]
    interval: float = 0.2
    lines: set[str] = field(default_factory=set)
    samples: dict[str, int] = field(default_factory=dict)
    _procs: list[subprocess.Popen] = field(default_factory=list)
    _pids: dict[str, str] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _reader(self, name: str, stream) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._lock:
                if line.startswith("--pid=") and name not in self._pids:
                    self._pids[name] = line[len("--pid=") :]
                elif line == "--sample--":
                    self.samples[name] = self.samples.get(name, 0) + 1
                else:
                    self.lines.add(f"{name}: {line}")

    def _local(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["ps", "-eo", "args"], capture_output=True, text=True, check=False
            ).stdout
            with self._lock:
                self.samples["control"] = self.samples.get("control", 0) + 1
                self.lines.update(f"control: {line}" for line in out.splitlines())
            self._stop.wait(self.interval)

    def __enter__(self) -> PsSampler:
        loop = (
            f"echo --pid=$$; while :; do ps -eo args; echo --sample--; sleep {self.interval}; done"
        )
        for node in self.nodes:
            proc = subprocess.Popen(
                ["docker", "exec", container(node), "sh", "-c", loop],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self._procs.append(proc)
            t = threading.Thread(target=self._reader, args=(node, proc.stdout), daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._local, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        # A killed `docker exec` client leaves its process running in the node:
        # end the sampling loop we started there, by the PID it reported.
        for node, pid in list(self._pids.items()):
            on_node(node, ["kill", pid], check=False)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=10)
        for t in self._threads:
            t.join(timeout=10)

    def leaks(self, secrets: list[str]) -> list[str]:
        with self._lock:
            return sorted(line for line in self.lines if any(s and s in line for s in secrets))

    def save(self, path: Path) -> None:
        """What was seen, to a file: a later suite of the same run checks the same
        converge's command lines without converging again (``support.provision``)."""
        with self._lock:
            doc = {
                "nodes": list(self.nodes),
                "interval": self.interval,
                "samples": self.samples,
                "lines": sorted(self.lines),
            }
        path.write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: Path) -> PsSampler:
        """A sampler as ``save`` left it (stopped: it only answers ``leaks``)."""
        doc = json.loads(path.read_text())
        return cls(tuple(doc["nodes"]), doc["interval"], set(doc["lines"]), dict(doc["samples"]))


def find_secrets(text: str, secrets: list[str]) -> list[str]:
    """Lines of ``text`` that contain any secret (for assertion messages: secrets masked)."""
    out = []
    for line in text.splitlines():
        if any(s and s in line for s in secrets):
            masked = line
            for s in secrets:
                if s:
                    masked = masked.replace(s, "<SECRET>")
            out.append(masked)
    return out


# --- broker state ------------------------------------------------------------------------------


def broker_definitions(node: str) -> dict[str, Any]:
    """``rabbitmqctl export_definitions`` of a node's broker (hashes, never passwords)."""
    out = on_node(node, ["rabbitmqctl", "-q", "export_definitions", "-", "--format", "json"]).stdout
    return json.loads(out)


def room_state(room: Room) -> set[str]:
    """Everything provisioning manages, as comparable strings (no secrets)."""
    state: set[str] = set()
    for node in room.nodes:
        d = broker_definitions(node)
        for v in d["vhosts"]:
            state.add(f"{node} vhost {v['name']}")
        for u in d["users"]:
            state.add(f"{node} user {u['name']} tags={','.join(sorted(u['tags']))}")
        for p in d["permissions"]:
            rights = f"{p['configure']} {p['write']} {p['read']}"
            state.add(f"{node} permission {p['user']}@{p['vhost']} {rights}")
        for p in d.get("parameters", []):
            if p["component"] == "vhost-limits":
                for k, v in sorted(p["value"].items()):
                    state.add(f"{node} limit {p['vhost']} {k}={v}")
    accounts = on_node(room.head, "getent passwd").stdout
    for line in accounts.splitlines():
        name, _, uid, _, _, home, _ = line.split(":")
        if int(uid) >= 1000 and name not in ("nobody", "pi"):
            state.add(f"{room.head} account {name} {home}")
    configs = on_node(
        room.head, "ls -1 /home/*/.config/pimq/config.yaml 2>/dev/null || true"
    ).stdout
    for path in configs.split():
        state.add(f"{room.head} config {path}")
    for node in room.workers:
        cfg = yaml.safe_load(on_node(node, "cat /etc/pimq/worker.yaml").stdout)
        for v in cfg["vhosts"]:
            state.add(f"{node} worker-vhost {v}")
    return state


def wait_for(predicate, timeout: float = 30, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


# --- TLS (the room CA the playbooks made) -----------------------------------------------------

#: What crosses the classroom network: AMQP over TLS and the HTTPS management API.
AMQPS_PORT = 5671
HTTPS_PORT = 15671


def room_ca(inventory: Path = INVENTORY) -> Path:
    """The room CA's certificate on the control machine (roles/pimq_broker/tasks/tls.yml)."""
    return inventory / "credentials" / "tls" / "ca.crt.txt"


def amqps_options(host: str, inventory: Path = INVENTORY):
    """pika TLS options for a broker at ``host`` (a name or an address in its
    certificate), verified against the room CA."""
    import ssl

    import pika

    ctx = ssl.create_default_context(cafile=str(room_ca(inventory)))
    return pika.SSLOptions(ctx, server_hostname=host)


def api_url(room: Room, node: str | None = None) -> str:
    """The HTTPS management API of a broker (the head's by default); verify with room_ca()."""
    return f"https://{room.ips[node or room.head]}:{HTTPS_PORT}/api"
