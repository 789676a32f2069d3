"""The room's per-queue caps on a private broker, as pimq_students sets them:
the admin-owned policies converged by the real pimq_rabbitmq module (run by
ansible-playbook against the broker's management API), and the publishing
helpers the cap tests fill queues with (tests/integration/test_quotas.py,
test_flood.py)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pika
import pika.exceptions as px

from support.helpers import ADMIN_PASSWORD, ADMIN_USER
from support.plugins import REPO, filter_plugin

#: the control machine's Ansible (make setup's .venv), whichever pika runs the tests
ANSIBLE_BIN = REPO / ".venv" / "bin"
roster = filter_plugin("pimq", "pimq_roster")

PLAYBOOK = """
- name: Converge caps
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Policies
      pimq_rabbitmq:
        api_url: "{{ api }}"
        login_user: "{{ admin }}"
        login_password: "{{ password }}"
        policies: "{{ policies }}"
      register: result
      no_log: true
    - name: Changes
      ansible.builtin.debug:
        msg: "CHANGES={{ result.changes | to_json }}"
"""


def converge(broker, tmp_path: Path, vhost: str, caps: dict, check: bool = False) -> list[str]:
    """Run pimq_rabbitmq with ``vhost``'s cap policies; the changes it reports."""
    book = tmp_path / "caps.yml"
    book.write_text(PLAYBOOK)
    extra = tmp_path / "vars.json"
    extra.write_text(
        json.dumps(
            {
                "api": f"http://127.0.0.1:{broker.management_port}",
                "admin": ADMIN_USER,
                "password": ADMIN_PASSWORD,
                "policies": roster.cap_policies(vhost, caps),
            }
        )
    )
    extra.chmod(0o600)
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\ninterpreter_python = auto_silent\n")
    env = {
        "PATH": f"{ANSIBLE_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_LIBRARY": str(REPO / "roles/pimq/library"),
        "ANSIBLE_MODULE_UTILS": str(REPO / "roles/pimq/module_utils"),
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",  # as on the Pis
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
    }
    args = [
        str(ANSIBLE_BIN / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"@{extra}",
        str(book),
    ]
    out = subprocess.run(
        args + (["--check"] if check else []), env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if "CHANGES=" in x)
    return json.loads(line.split("CHANGES=", 1)[1].rstrip('"').replace('\\"', '"'))


def policies(broker, vhost: str) -> dict[str, dict]:
    out = broker.ctl("list_policies", "-p", vhost, "--formatter", "json")
    return {p["name"]: p for p in json.loads(out or "[]")}


def api(broker, method: str, path: str, user: str, password: str, body=None) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
    )
    req.add_header("Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def confirmed_channel(broker, student):
    conn = broker.connect(student)
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch


def fill(ch, queue: str, size: int, persistent: bool = False) -> int:
    """Publish ``size``-byte messages until the broker refuses one: bytes taken."""
    props = pika.BasicProperties(delivery_mode=2) if persistent else None
    taken = 0
    for _ in range(10_000):
        try:
            ch.basic_publish("", queue, b"x" * size, properties=props)
        except px.NackError:
            return taken
        taken += size
    raise AssertionError("the broker never refused a publish")
