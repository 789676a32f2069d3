"""Acting as a student of the simulated classroom, with their own config on the head.

The classroom suite's tenant, roster and accounts tests all ask the same question
of a student: does their own config (``~/.config/pimq/config.yaml``, TLS with the
room CA it names) let them work in their vhost, and only there?
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support import nodes

# A student's own script, as the README shows it; runs on the head as the student,
# sent on stdin (the password is read from their config, never on a command line).
STUDENT_CLIENT = r"""
import json, os, ssl, sys, yaml, pika
cfg = yaml.safe_load(open(os.path.expanduser("~/.config/pimq/config.yaml")))
vhost = sys.argv[1] if len(sys.argv) > 1 else cfg["vhost"]
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
ch.queue_declare(queue=q, exclusive=True)
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
    """One student on the head node, reached over SSH with the harness key."""

    room: nodes.Room
    name: str

    def ssh(self, command: str, **kw) -> subprocess.CompletedProcess[str]:
        return nodes.ssh(self.room, self.name, command, **kw)

    def try_vhost(self, vhost: str | None = None) -> dict:
        """Connect with the student's own config (to another vhost if given), declare,
        publish (confirmed), consume; what happened: ``connect`` ("ok" or the error's
        type) and ``consumed`` (the message that came back)."""
        args = [vhost] if vhost else []
        proc = nodes.run_python_as(self.room, self.name, STUDENT_CLIENT, *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])


def password_ssh(room: nodes.Room, user: str, password: str, tmp: Path, command: str = "id -un"):
    """``ssh user@head command`` offering only a password (no key, no agent)."""
    secret, askpass = tmp / f"{user}.pw", tmp / "askpass.sh"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    askpass.write_text('#!/bin/sh\nexec cat "$PIMQ_TEST_PASSWORD_FILE"\n')
    askpass.chmod(0o700)
    pairs = zip(nodes.SSH_OPTIONS[::2], nodes.SSH_OPTIONS[1::2], strict=True)
    options = [x for flag, value in pairs if value != "BatchMode=yes" for x in (flag, value)]
    argv = [
        "ssh", *options, "-o", "PreferredAuthentications=password,keyboard-interactive",
        "-o", "PubkeyAuthentication=no", "-o", "IdentityAgent=none",
        "-o", "NumberOfPasswordPrompts=1", f"{user}@{room.ips[room.head]}", command,
    ]  # fmt: skip
    env = {
        **os.environ,
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "PIMQ_TEST_PASSWORD_FILE": str(secret),
    }
    return subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
