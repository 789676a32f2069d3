"""No password in argv (ps), in Ansible output at -vvv, in the journal, or in a file
another user can read."""

from __future__ import annotations

import csv
import json
import shlex
import stat

import pytest
import yaml
from support import nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(1800)]


def test_student_config_files_are_private_and_complete(converged, room, creds):
    for name in room.students:
        out = nodes.on_node(
            room.head, ["stat", "-c", "%a %U %G", f"/home/{name}/.config/pimq/config.yaml"]
        ).stdout
        assert out.split() == ["600", name, name]
        cfg = yaml.safe_load(
            nodes.on_node(room.head, ["cat", f"/home/{name}/.config/pimq/config.yaml"]).stdout
        )
        assert sorted(cfg) == ["ca", "host", "password", "port", "user", "vhost"]
        assert cfg["port"] == 5671 and cfg["ca"] == "/etc/pimq/ca.crt"
        assert cfg["host"] == room.head and cfg["vhost"] == name and cfg["user"] == name
        assert cfg["password"] == creds.students[name]


def test_worker_config_is_root_pimq_0640(converged, room, creds):
    for node in room.workers:
        out = nodes.on_node(node, ["stat", "-c", "%a %U %G", "/etc/pimq/worker.yaml"]).stdout
        assert out.split() == ["640", "root", "pimq"]
        cfg = yaml.safe_load(nodes.on_node(node, ["cat", "/etc/pimq/worker.yaml"]).stdout)
        # compared apart: a failing dict comparison would print the password
        assert cfg.pop("password", None) == creds.worker, f"{node}: not the worker's password"
        assert cfg == {
            "host": room.head,
            "port": 5671,
            "ca": "/etc/pimq/ca.crt",
            "user": "pimq-worker",
            "vhosts": list(room.students),
            "processes": 0,
            "heartbeat": 30,
            "store": "/var/lib/pimq/store",
            "sandbox_socket": "/run/pimq-sandbox/sandbox.sock",
            "shard_timeout": 600,
            "consumer_timeout": 1800,
            "dataset_quota_mb": 1024,
            "metrics": "/var/lib/pimq-metrics/pimq-worker.prom",  # the monitor's textfile
        }


def test_credentials_folder_is_private(converged):
    base = nodes.INVENTORY / "credentials"
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    files = [p for p in base.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert p.suffix == ".txt", f"{p} would be parsed as inventory"
    handout = (base / "handout.csv.txt").read_text().splitlines()
    assert handout[0] == "name,full_name,vhost,user,password,head_host,port"
    assert len(handout) == 1 + len(nodes.load_room().students)
    # students connect over AMQPS: the plaintext port is loopback-only
    ports = {next(csv.reader([line]))[-1] for line in handout[1:]}
    assert ports == {"5671"}, ports


def test_no_password_in_ps_during_a_whole_converge(converged, creds):
    sampler = converged.sampler
    assert all(sampler.samples.get(n, 0) > 20 for n in (*sampler.nodes, "control")), sampler.samples
    assert sampler.leaks(creds.all()) == [], "password in a process argument list"


def test_no_password_in_vvv_output(converged, creds):
    assert "-vvv" in converged.first.args
    assert nodes.find_secrets(converged.first.output, creds.all()) == []
    for run in (converged.second, converged.check):
        assert nodes.find_secrets(run.output, creds.all()) == []


def test_no_password_in_any_journal(converged, room, creds):
    for node in room.nodes:
        journal = nodes.on_node(node, ["journalctl", "--no-pager", "-o", "cat"], timeout=180).stdout
        assert len(journal) > 1000
        assert nodes.find_secrets(journal, creds.all()) == [], f"password in the journal of {node}"
        logs = nodes.on_node(node, "cat /var/log/rabbitmq/*.log 2>/dev/null || true").stdout
        assert nodes.find_secrets(logs, creds.all()) == [], f"password in RabbitMQ logs of {node}"


SCAN = r"""
import json, os, sys
secrets = json.loads(sys.stdin.read())
hits = []
for top in ("/etc", "/home", "/opt", "/var", "/tmp", "/root", "/srv", "/usr/local"):
    for root, dirs, files in os.walk(top, onerror=lambda e: None):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for f in files:
            p = os.path.join(root, f)
            try:
                if os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) > 5_000_000:
                    continue
                data = open(p, "rb").read()
            except OSError:
                continue
            if any(s.encode() in data for s in secrets):
                hits.append(p)
print(json.dumps(hits))
"""


def test_no_password_in_a_file_another_student_can_read(converged, room, creds):
    """As each student, read every file they can: only their own config holds a password,
    and only their own."""
    for name in room.students:
        # The script travels in argv (no secret in it), the secrets on stdin.
        proc = nodes.ssh(
            room,
            name,
            "python3 -c " + shlex.quote(SCAN),
            input=json.dumps(creds.all()),
            timeout=300,
        )
        hits = json.loads(proc.stdout)
        assert hits == [f"/home/{name}/.config/pimq/config.yaml"], (name, hits)
