"""Fixtures for suites that run on the simulated classroom.

``room``       the classroom (brought up if needed) as described by inventory/local
``converged``  playbooks/site.yml converged once per session (first run at -vvv with
               ``ps`` sampled on every node, then a second run and a --check --diff run)
``creds``      the room's generated credentials (control machine)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import nodes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "classroom: needs the simulated classroom (Docker)")


@pytest.fixture(scope="session")
def room() -> nodes.Room:
    """The simulated classroom, up (reused if running) with inventory/local written."""
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True).returncode
    ):
        pytest.skip("no Docker engine: the simulated classroom cannot run here")
    if (nodes.REPO / "inventory" / "local").resolve() == nodes.INVENTORY:
        up = subprocess.run(
            [sys.executable, str(nodes.REPO / "tests" / "harness" / "classroom.py"), "up"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if up.returncode != 0:
            pytest.fail(f"classroom did not come up:\n{up.stderr}")
    return nodes.load_room()


@pytest.fixture(scope="session")
def runtime_source(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A snapshot of worker/ for this session: the wheel stays byte-identical
    between the session's runs even while someone edits worker/."""
    src = nodes.REPO / "worker"
    if not (src / "pyproject.toml").exists():
        return None
    dst = tmp_path_factory.mktemp("runtime") / "worker"
    shutil.copytree(
        src,
        dst,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist"),
    )
    return dst


@dataclass
class Converge:
    first: nodes.PlaybookRun
    second: nodes.PlaybookRun
    check: nodes.PlaybookRun
    sampler: nodes.PsSampler


def site_vars(runtime_source: Path | None, **more) -> dict:
    extra = dict(more)
    if runtime_source is not None:
        extra["pimq_runtime_source"] = str(runtime_source)
    return extra


@pytest.fixture(scope="session")
def converge_vars(runtime_source: Path | None) -> dict:
    """Extra vars every classroom run of site.yml should use in this session."""
    return site_vars(runtime_source)


@pytest.fixture(scope="session")
def converged(room: nodes.Room, converge_vars: dict, tmp_path_factory) -> Converge:
    """site.yml converged: once at -vvv under ps sampling, then again, then --check --diff."""
    tmp = tmp_path_factory.mktemp("converge")
    with nodes.PsSampler(room.nodes) as sampler:
        first = nodes.playbook("site.yml", "-vvv", extra_vars=converge_vars, tmp_dir=tmp)
    (tmp / "first-vvv.log").write_text(first.output)
    if first.rc != 0:
        pytest.fail(f"site.yml did not converge (rc={first.rc}):\n{first.tail(80)}")
    second = nodes.playbook("site.yml", extra_vars=converge_vars, tmp_dir=tmp)
    check = nodes.playbook("site.yml", "--check", "--diff", extra_vars=converge_vars, tmp_dir=tmp)
    return Converge(first, second, check, sampler)


@pytest.fixture(scope="session")
def creds(converged: Converge) -> nodes.Credentials:
    return nodes.credentials()


STUDENT_CLIENT = r"""
import json, os, ssl, sys, yaml, pika
cfg = yaml.safe_load(open(os.path.expanduser("~/.config/pimq/config.yaml")))
vhost = sys.argv[1] if len(sys.argv) > 1 else cfg["vhost"]
# a student's own script, as the README shows it: TLS with the room CA the config names
tls = pika.SSLOptions(ssl.create_default_context(cafile=cfg["ca"]), cfg["host"])
params = pika.ConnectionParameters(host=cfg["host"], port=cfg["port"], virtual_host=vhost,
    credentials=pika.PlainCredentials(cfg["user"], cfg["password"]),
    connection_attempts=1, blocked_connection_timeout=10, ssl_options=tls)
out = {"vhost": vhost}
try:
    conn = pika.BlockingConnection(params)
except Exception as exc:
    out["connect"] = type(exc).__name__
    print(json.dumps(out)); sys.exit(0)
out["connect"] = "ok"
ch = conn.channel()
ch.confirm_delivery()
q = "matrix-test"
ch.queue_declare(queue=q, auto_delete=True)
ch.basic_publish(exchange="", routing_key=q, body=b"hello " + vhost.encode(),
                 properties=pika.BasicProperties(delivery_mode=2), mandatory=True)
method, props, body = ch.basic_get(queue=q, auto_ack=True)
out["consumed"] = body.decode() if body else None
ch.queue_delete(queue=q)
conn.close()
print(json.dumps(out))
"""


@dataclass
class Student:
    """Acting as one student on the head node (SSH with the harness key)."""

    room: nodes.Room
    name: str

    def ssh(self, command: str, **kw):
        return nodes.ssh(self.room, self.name, command, **kw)

    def try_vhost(self, vhost: str | None = None) -> dict:
        """Connect with the student's own config (to another vhost if given),
        declare, publish (confirmed), consume; report what happened."""
        import json

        args = [vhost] if vhost else []
        proc = nodes.run_python_as(self.room, self.name, STUDENT_CLIENT, *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])
