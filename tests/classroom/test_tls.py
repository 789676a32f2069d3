"""TLS on the classroom network: what listens where, the room CA and the
brokers' certificates, the worker and a student over TLS, and a capture of the
room's Docker network during a job and a converge with no secret in it."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from support import nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(2400)]

PORTS = {"amqp": 5672, "http": 15672, "amqps": 5671, "https": 15671}

# Run on a node (as root, with Debian's python3): can it open a TCP connection
# to each (host, port)? And with TLS verified against the room CA and the name?
PROBE = r"""
import json, socket, ssl, sys
out = {}
for target in sys.argv[1:]:
    host, port, mode = target.rsplit(":", 2)
    mode, _, name = mode.partition("=")  # tls=NAME: expect the certificate to name NAME
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
    except OSError as exc:
        out[target] = "refused" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
        continue
    if mode == "tls":
        ctx = ssl.create_default_context(cafile="/etc/pimq/ca.crt")
        try:
            with ctx.wrap_socket(s, server_hostname=name or host) as t:
                out[target] = "tls " + t.version()
        except ssl.SSLError as exc:
            out[target] = "tls failed: " + getattr(exc, "verify_message", exc.reason or str(exc))
    else:
        s.close()
        out[target] = "open"
print(json.dumps(out))
"""


def probe(node: str, *targets: str) -> dict[str, str]:
    out = nodes.on_node(node, ["python3", "-c", PROBE, *targets]).stdout
    return json.loads(out)


def test_plaintext_listeners_are_loopback_only(converged, room):
    head, pi = room.head, room.workers[0]
    got = probe(
        pi,
        *(f"{head}:{PORTS[p]}:tcp" for p in ("amqp", "http", "amqps", "https")),
        f"{room.ips[head]}:{PORTS['amqp']}:tcp",
    )
    assert got == {
        f"{head}:5672:tcp": "refused",
        f"{head}:15672:tcp": "refused",
        f"{head}:5671:tcp": "open",
        f"{head}:15671:tcp": "open",
        f"{room.ips[head]}:5672:tcp": "refused",
    }
    # the other way round: a worker Pi's broker, seen from the head
    got = probe(head, f"{pi}:5672:tcp", f"{pi}:15672:tcp", f"{pi}:5671:tcp")
    assert got == {
        f"{pi}:5672:tcp": "refused",
        f"{pi}:15672:tcp": "refused",
        f"{pi}:5671:tcp": "open",
    }
    # on the node itself, the plaintext listeners serve 127.0.0.1 (the playbooks' API calls)
    assert probe(head, "127.0.0.1:5672:tcp", "127.0.0.1:15672:tcp") == {
        "127.0.0.1:5672:tcp": "open",
        "127.0.0.1:15672:tcp": "open",
    }


def test_every_broker_proves_its_names_with_the_room_ca(converged, room):
    for node in room.nodes:
        other = room.head if node != room.head else room.workers[0]
        targets = [f"{node}:5671:tls", f"{room.ips[node]}:5671:tls"]
        if node == room.head:
            targets.append(f"{node}:15671:tls")
        got = probe(other, *targets)
        assert all(v.startswith("tls TLSv1.") for v in got.values()), got
    # a broker answering at another broker's name (say, a Pi that took the
    # head's address) fails the name check
    pi = room.workers[0]
    target = f"{room.ips[pi]}:5671:tls={room.head}"
    got = probe(room.workers[-1], target)
    assert got[target].startswith("tls failed: Hostname mismatch"), got


def test_tls_files_on_the_nodes_and_the_control_machine(converged, room):
    for node in room.nodes:
        out = nodes.on_node(
            node,
            "stat -c '%n %a %U %G' /etc/pimq/ca.crt /etc/rabbitmq/tls "
            "/etc/rabbitmq/tls/broker.key /etc/rabbitmq/tls/broker.crt",
        ).stdout.splitlines()
        assert out == [
            "/etc/pimq/ca.crt 644 root root",
            "/etc/rabbitmq/tls 750 root rabbitmq",
            "/etc/rabbitmq/tls/broker.key 400 rabbitmq rabbitmq",
            "/etc/rabbitmq/tls/broker.crt 644 root rabbitmq",
        ], node
        # no one but rabbitmq reads the key: a student on the head cannot
    denied = nodes.ssh(room, room.students[0], "cat /etc/rabbitmq/tls/broker.key", check=False)
    assert denied.returncode != 0 and "BEGIN" not in denied.stdout
    tls = nodes.INVENTORY / "credentials" / "tls"
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    names = sorted(p.name for p in tls.iterdir())
    expected = ["ca.crt.txt", "ca.csr.txt", "ca.key.txt"]
    for node in room.nodes:
        expected += [f"{node}.crt.txt", f"{node}.csr.txt", f"{node}.key.txt"]
    # the monitor's: the teacher page's certificate (head) and Prometheus' client
    # certificate for the brokers' rabbitmq_prometheus
    for name in (f"{room.head}.page", "prometheus-client"):
        expected += [f"{name}.crt.txt", f"{name}.csr.txt", f"{name}.key.txt"]
    assert names == sorted(expected)
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tls / "head.crt.txt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"DNS:{room.head}" in text and f"IP Address:{room.ips[room.head]}" in text


def test_worker_and_students_over_tls(converged, room, tmp_path):
    for node in room.workers:
        log = nodes.on_node(node, "journalctl -u pimq-worker -b --no-pager -o cat").stdout
        assert f"connected to {room.head}:5671 over TLS" in log, node
    student = room.students[0]
    path = "/tmp/tls-words.txt"
    nodes.ssh(room, student, f"printf 'more tls more\\n%.0s' $(seq 500) > {path}")
    job = nodes.ssh(room, student, f"pimq run wordcount --word more {path} --shards 6 --json")
    assert json.loads(job.stdout)["result"] == 1000
    # a buddy's Pi (--host): its own broker, over TLS, its certificate checked
    pi = room.workers[0]
    out = nodes.ssh(room, student, f"pimq send tlsbuddy hi --host {pi}")
    out = nodes.ssh(room, student, f"pimq receive tlsbuddy --count 1 --host {pi}")
    assert "hi" in out.stdout
    out = nodes.ssh(room, student, f"pimq status --host {pi}")
    assert f"on {pi}:5671 (TLS)" in out.stdout


def bridge(prefix: str) -> str:
    """The Linux bridge of the room's Docker network (tests/harness/classroom.py names it)."""
    net = subprocess.run(
        ["docker", "network", "inspect", "-f", "{{.Id}}", f"{prefix}-classroom"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"br-{net.stdout.strip()[:12]}"


class Capture:
    """tcpdump on the room's Docker bridge (every packet between the nodes)."""

    def __init__(self, iface: str, path: Path) -> None:
        tcpdump = shutil.which("tcpdump")
        assert tcpdump, "tcpdump is missing on the control machine (make setup installs it)"
        self.path = path
        self.proc = subprocess.Popen(
            [tcpdump, "-i", iface, "-s", "0", "-U", "-w", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.exists(), self.proc.stderr.read() if self.proc.poll() is not None else ""

    def stop(self) -> bytes:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        return self.path.read_bytes()


def test_capture_holds_no_password_and_no_shard_body(converged, room, creds, tmp_path):
    student, buddy = room.students[0], room.workers[0]
    marker = "tlsmarker" + secrets.token_hex(6)  # in every shard body, nowhere else
    control = "clearcontrol" + secrets.token_hex(6)
    body_line = f"{marker} more words of a secret essay\\n"
    path = f"/tmp/{marker}.txt"
    cap = Capture(bridge(nodes.PREFIX), tmp_path / "room.pcap")
    try:
        nodes.ssh(room, student, f"printf '{body_line}%.0s' $(seq 2000) > {path}")
        job = nodes.ssh(room, student, f"pimq run wordcount --word more {path} --shards 8 --json")
        assert json.loads(job.stdout)["result"] == 2000
        # the student's password crosses to a buddy's Pi; the worker's to the head
        nodes.ssh(room, student, f"pimq send capq {marker} --host {buddy}")
        nodes.on_node(buddy, "systemctl restart pimq-worker")
        nodes.wait_for(
            lambda: (
                "over TLS"
                in nodes.on_node(buddy, "journalctl -u pimq-worker -n 5 --no-pager -o cat").stdout
            ),
            timeout=60,
            what="the restarted worker to log in over TLS",
        )
        converge = nodes.playbook("site.yml", tmp_dir=tmp_path)
        assert converge.rc == 0, converge.tail()
        # the control: a string sent in clear between two nodes is found
        send = (
            "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
            f".sendto(b'{control}', ('{buddy}', 9))"
        )
        nodes.on_node(room.head, ["python3", "-c", send])
        time.sleep(1)
    finally:
        data = cap.stop()
    assert control.encode() in data, "the capture misses clear text between nodes"
    # the capture saw the traffic: every shard body went to the workers over it
    assert len(data) > 2000 * len(body_line), len(data)
    shards_to_workers = subprocess.run(
        ["tcpdump", "-r", str(cap.path), "-nn", "tcp", "port", "5671"],
        capture_output=True,
        text=True,
    ).stdout.count("\n")
    assert shards_to_workers > 50
    leaks = [s for s in (*creds.all(), marker) if s.encode() in data]
    assert leaks == [], "in clear on the classroom network"


def serial(path: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-in", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_certificates_renewed_only_when_due(converged, room, tmp_path):
    """A certificate within pimq_tls_renew_days of expiry is re-issued, installed and
    the broker restarted; the next run leaves everything as it is."""
    tls = nodes.INVENTORY / "credentials" / "tls"
    before = {n: serial(tls / f"{n}.crt.txt") for n in room.nodes}
    ca_before = (tls / "ca.crt.txt").read_text()
    since = int(time.time())
    # every certificate is "due" when renewal starts further out than its lifetime
    due = nodes.playbook("broker.yml", extra_vars={"pimq_tls_renew_days": 1000}, tmp_dir=tmp_path)
    assert due.rc == 0, due.tail()
    after = {n: serial(tls / f"{n}.crt.txt") for n in room.nodes}
    assert all(after[n] != before[n] for n in room.nodes), (before, after)
    assert (tls / "ca.crt.txt").read_text() == ca_before  # the CA stays
    assert "RUNNING HANDLER [pimq_broker : Restart rabbitmq-server]" in due.output
    for node in room.nodes:
        installed = nodes.on_node(node, "cat /etc/rabbitmq/tls/broker.crt").stdout
        assert installed.strip() == (tls / f"{node}.crt.txt").read_text().strip()
    again = nodes.playbook("broker.yml", tmp_dir=tmp_path)
    assert again.rc == 0 and again.total("changed") == 0, again.tail()
    assert {n: serial(tls / f"{n}.crt.txt") for n in room.nodes} == after
    # the workers come back to the restarted broker and verify its new certificate
    for node in room.workers:
        nodes.wait_for(
            lambda node=node: (
                nodes.on_node(
                    node, f"journalctl -u pimq-worker --since @{since} --no-pager -o cat"
                ).stdout.count("over TLS")
                >= len(room.students)
            ),
            timeout=120,
            what=f"{node}'s worker back over TLS",
        )
    job = nodes.ssh(room, room.students[0], "pimq run noop --shards 6 --json")
    assert json.loads(job.stdout)["result"] == 6
