"""The teacher's numbers on the provisioned classroom (roles/pimq_monitor).

Prometheus on the head scrapes every node's exporter and every broker's
rabbitmq_prometheus; it is read here as the admin through its HTTP API, over
TLS checked against the room CA, as the teacher's page reads it. A student's
job of N shards must show as N shards done for that student, split between
the Pis as the job itself reports. And a student with a shell on the head
gets nothing from Prometheus or any exporter: no login, no client
certificate, no plaintext port.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from support import jobs, nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(900)]

PROMETHEUS_PORT = 9090
NODE_EXPORTER_PORT = 9100
RABBITMQ_TLS_PORT = 15691
RABBITMQ_PLAIN_PORT = 15692
STUDENT = "carol"  # not one the other classroom tests run jobs as
SHARDS = 24


class Prometheus:
    """The head's Prometheus as the admin: instant queries over its HTTP API."""

    def __init__(self, room: nodes.Room, admin: str) -> None:
        self.url = f"https://{room.ips[room.head]}:{PROMETHEUS_PORT}"
        self.auth = ("pimq-admin", admin)
        self.ca = str(nodes.INVENTORY / "credentials" / "tls" / "ca.crt.txt")

    def query(self, expr: str) -> list[dict]:
        r = requests.get(
            f"{self.url}/api/v1/query",
            params={"query": expr},
            auth=self.auth,
            verify=self.ca,
            timeout=10,
        )
        assert r.status_code == 200, (r.status_code, r.text[:300])
        return r.json()["data"]["result"]

    def by_pi(self, expr: str) -> dict[str, float]:
        return {s["metric"].get("pi", ""): float(s["value"][1]) for s in self.query(expr)}

    def value(self, expr: str) -> float:
        """A scalar-like query's value; 0 when nothing matches (a counter never written)."""
        found = self.query(expr)
        assert len(found) <= 1, found
        return float(found[0]["value"][1]) if found else 0.0

    def wait(self, what: str, check, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last is True:
                return
            time.sleep(2)
        raise AssertionError(f"{what}: not seen within {timeout:g} s (last: {last})")


@pytest.fixture(scope="module")
def prom(room: nodes.Room, converged, creds: nodes.Credentials) -> Prometheus:
    return Prometheus(room, creds.admin)


def test_prometheus_sees_every_pi_up_on_both_jobs(prom, room):
    want = {(job, pi) for job in ("node", "rabbitmq") for pi in room.nodes}

    def all_up():
        up = {(s["metric"]["job"], s["metric"]["pi"]): s["value"][1] for s in prom.query("up")}
        return True if {k for k, v in up.items() if v == "1"} == want else up

    prom.wait("every node's exporter and broker up", all_up)
    # the worker's own gauges come through each worker's node exporter: its pool size
    pools = prom.by_pi("pimq_worker_processes")
    for pi in room.workers:
        cores = int(nodes.on_node(pi, ["nproc"]).stdout)
        assert pools.get(pi) == cores, pools
    assert room.head not in pools or room.head in room.workers


def test_a_students_shards_are_counted_per_pi_as_the_job_reports(prom, room):
    done = f'pimq_worker_shards_total{{student="{STUDENT}",outcome="done"}}'
    before = prom.by_pi(done)
    failed_before = prom.value(
        f'sum(pimq_worker_shards_total{{student="{STUDENT}",outcome!="done"}})'
    )
    seconds_before = prom.value(f'sum(pimq_worker_shard_seconds_total{{student="{STUDENT}"}})')

    job = jobs.start(room, STUDENT, "primes", "400000", "--shards", str(SHARDS)).wait(timeout=300)
    assert job.rc == 0, job.err
    assert job.doc["shards"] == SHARDS
    per_pi = job.doc["workers"]  # the shards each Pi did, as the job saw it
    assert sum(per_pi.values()) == SHARDS and job.duplicates == 0, job.doc

    def counted():
        now = prom.by_pi(done)
        grown = {pi: now.get(pi, 0) - before.get(pi, 0) for pi in now}
        grown = {pi: n for pi, n in grown.items() if n}
        return True if grown == per_pi else grown

    prom.wait(f"{SHARDS} shards done for {STUDENT}, per Pi as {per_pi}", counted)
    # nothing failed or was dead-lettered, and the shards' run time was counted
    assert (
        prom.value(f'sum(pimq_worker_shards_total{{student="{STUDENT}",outcome!="done"}})')
        == failed_before
    )
    assert prom.value(f'sum(pimq_worker_shard_seconds_total{{student="{STUDENT}"}})') > (
        seconds_before
    )
    # rabbitmq_prometheus' per-object metrics: the head's queues of the student's vhost
    consumers = prom.query(
        f'rabbitmq_queue_consumers{{pi="{room.head}",vhost="{STUDENT}",queue="pimq.tasks"}}'
    )
    assert [float(s["value"][1]) for s in consumers] == [float(len(room.workers))], consumers


# Run on the head as a student (on stdin: no secret on a command line): every
# endpoint of the monitor, tried without credentials, with the student's own
# RabbitMQ login, without TLS and without a client certificate.
PROBE = r"""
import base64, json, os, socket, ssl, sys, urllib.error, urllib.request, yaml
nodes, prom_port, node_port, tls_port, plain_port = json.loads(sys.argv[1])
cfg = yaml.safe_load(open(os.path.expanduser("~/.config/pimq/config.yaml")))
ctx = ssl.create_default_context(cafile="/etc/pimq/ca.crt")
mine = base64.b64encode(f"{cfg['user']}:{cfg['password']}".encode()).decode()
out = {}

def get(url, auth=None, context=ctx):
    req = urllib.request.Request(url, headers={"Authorization": "Basic " + auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return {"status": r.status, "body": r.read(200).decode(errors="replace")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read(200).decode(errors="replace")}
    except (OSError, ssl.SSLError) as e:
        return {"error": type(e).__name__ + ": " + str(e)[:120]}

head = nodes[0]
for path in ("/api/v1/query?query=up", "/metrics", "/graph"):
    url = f"https://{head}:{prom_port}{path}"
    out[f"prometheus {path}"] = get(url)
    out[f"prometheus {path} as student"] = get(url, mine)
out["prometheus plaintext"] = get(f"http://{head}:{prom_port}/api/v1/query?query=up")
for node in nodes:
    url = f"https://{node}:{node_port}/metrics"
    out[f"node {node}"] = get(url)
    out[f"node {node} as student"] = get(url, mine)
    out[f"node {node} plaintext"] = get(f"http://{node}:{node_port}/metrics")
    out[f"rabbitmq {node} no client cert"] = get(f"https://{node}:{tls_port}/metrics")
    out[f"rabbitmq {node} plaintext"] = get(f"http://{node}:{plain_port}/metrics")
out["rabbitmq 127.0.0.1 plaintext"] = get(f"http://127.0.0.1:{plain_port}/metrics")
for name in ("prometheus-web.yml", "node.key", "prometheus-client.key", "scrape-password"):
    try:
        open("/etc/pimq/monitor/" + name).read()
        out["read " + name] = "read"
    except OSError as e:
        out["read " + name] = type(e).__name__
print(json.dumps(out))
"""


def test_a_student_on_the_head_gets_nothing_from_prometheus_or_any_exporter(room, converged):
    ports = [PROMETHEUS_PORT, NODE_EXPORTER_PORT, RABBITMQ_TLS_PORT, RABBITMQ_PLAIN_PORT]
    arg = json.dumps([list(room.nodes), *ports])
    run = nodes.ssh(room, "alice", f"python3 - '{arg}'", input=PROBE, timeout=180)
    got = json.loads(run.stdout)
    refused = {}
    for what, answer in got.items():
        if what.startswith("read "):
            ok = answer == "PermissionError"
        elif "plaintext" in what or "no client cert" in what:
            # no metrics without TLS, nor without a room-CA client certificate:
            # the TLS listeners answer plain HTTP with 400 at most, 15692 is closed
            ok = "error" in answer or (answer["status"] == 400 and "#" not in answer["body"])
        else:  # TLS, but no login or the student's own: 401
            ok = answer.get("status") == 401
        if not ok:
            refused[what] = answer
    assert not refused, f"a student got through: {json.dumps(refused, indent=1)}"
    # the handshake itself is what stops a client without a certificate
    for node in room.nodes:
        answer = got[f"rabbitmq {node} no client cert"]
        assert "error" in answer and ("SSL" in answer["error"] or "Connection" in answer["error"])
        assert "connection refused" in got[f"rabbitmq {node} plaintext"]["error"].lower(), got
    assert "connection refused" in got["rabbitmq 127.0.0.1 plaintext"]["error"].lower(), got


def test_the_pi_health_timer_writes_the_throttling_bits_where_vcgencmd_exists(prom, room):
    pi = room.workers[-1]
    fake = '#!/bin/sh\n[ "$1" = get_throttled ] && echo throttled=0x50005\n'
    assert not prom.by_pi("pimq_pi_throttled"), "no vcgencmd in the simulated room"
    nodes.on_node(pi, "cat > /usr/bin/vcgencmd && chmod 0755 /usr/bin/vcgencmd", input=fake)
    try:
        nodes.on_node(pi, ["systemctl", "start", "pimq-pi-health.service"])

        def seen():
            got = prom.by_pi("pimq_pi_throttled")
            return True if got == {pi: float(0x50005)} else got

        prom.wait(f"pimq_pi_throttled of {pi}", seen, timeout=60)
        mode = nodes.on_node(
            pi, ["stat", "-c", "%a %U", "/var/lib/pimq-metrics/pimq-pi-health.prom"]
        )
        assert mode.stdout.split() == ["644", "root"]
    finally:
        nodes.on_node(
            pi, "rm -f /usr/bin/vcgencmd /var/lib/pimq-metrics/pimq-pi-health.prom", check=False
        )
    # where there is no vcgencmd, the timer's service is skipped, not failed
    state = nodes.on_node(
        room.head,
        ["systemctl", "show", "pimq-pi-health.service", "--property=Result,ConditionResult"],
    ).stdout
    assert "ConditionResult=no" in state and "Result=success" in state, state


def test_the_monitor_playbook_does_nothing_when_the_monitor_is_off(converged, converge_vars):
    run = nodes.playbook("monitor.yml", extra_vars={**converge_vars, "pimq_monitor_enabled": False})
    assert run.rc == 0, run.tail()
    assert run.recap and all(r["ok"] == 0 and r["changed"] == 0 for r in run.recap.values()), (
        run.recap
    )
