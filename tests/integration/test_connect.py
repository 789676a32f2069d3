"""A student's own script reaches their vhost with pimq.connect() or pimq env, no password typed."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from support.helpers import queue_depth

SCRIPT = """
import sys, pimq
conn = pimq.connect(heartbeat=7)
ch = conn.channel()
ch.queue_declare("mine", durable=True)
ch.basic_publish("", "mine", b"from my script")
method, props, body = ch.basic_get("mine", auto_ack=True)
print(body.decode(), conn._impl.params.heartbeat)
print(open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode())
conn.close()
"""

URL_SCRIPT = """
import os, pika
conn = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
ch = conn.channel()
ch.queue_declare("url", durable=True)
ch.confirm_delivery()
ch.basic_publish("", "url", b"x")
print(ch.queue_declare("url", passive=True).method.message_count)
conn.close()
"""


def test_pimq_connect_from_a_script(broker, student, cli, tmp_path):
    script = tmp_path / "mine.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script)], env=cli.env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    first, cmdline = out.stdout.splitlines()
    assert first == "from my script 7"
    assert student.password not in cmdline
    assert queue_depth(broker, student, "mine") == 0


def test_pimq_connect_says_why_it_cannot(broker, student, cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"host: 127.0.0.1\nport: {broker.port}\nvhost: {student.vhost}\n"
        f"user: {student.user}\npassword: wrong\n"
    )
    bad.chmod(0o600)
    code = "import pimq\ntry:\n    pimq.connect()\nexcept Exception as e:\n    print(e)\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**cli.env, "PIMQ_CONFIG": str(bad)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "wrong user name or password" in out.stdout and "wrong" not in out.stderr


def test_pimq_env_in_a_shell(broker, student, cli):
    out = cli.run("env")
    assert out.returncode == 0, out.stderr
    assert student.password not in out.stdout
    assert f"export PIMQ_VHOST={student.vhost}" in out.stdout.splitlines()
    shell = f'eval "$({sys.executable} -m pimq env --password)"\n{sys.executable} -c "$SCRIPT"\n'
    run = subprocess.run(
        ["bash", "-c", shell],
        env={**cli.env, "SCRIPT": URL_SCRIPT},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1"
    assert queue_depth(broker, student, "url") == 1


def test_pimq_env_password_never_onto_a_terminal(student, cli):
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pimq", "env", "--password"],
        env=cli.env,
        stdout=follower,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    _out, err = proc.communicate(timeout=60)
    shown = b""
    try:
        while chunk := os.read(leader, 4096):
            shown += chunk
    except OSError:  # EIO: the terminal's other side is closed
        pass
    os.close(leader)
    assert proc.returncode == 2 and "never onto the screen" in err
    assert student.password.encode() not in shown
