"""Bad messages, failing jobs and errors a student can cause."""

from __future__ import annotations

import json

import pika
import pytest
from support.helpers import SHAKESPEARE, WORKER_PASSWORD, drain, queue_depth, run_json, wait_until

BOOM = """
HELP = 'always raises'
def split(args, params, shards):
    return [b'x'] * shards
def run(body, params):
    return 1 / 0
def join(results, params):
    return sum(results)
"""

FLAKY = """
import os
HELP = 'fails twice per shard, then works'
def add_arguments(parser):
    parser.add_argument('dir')
def params(args):
    return {'dir': args.dir}
def split(args, params, shards):
    return [str(i).encode() for i in range(shards)]
def run(body, params):
    path = os.path.join(params['dir'], body.decode())
    with open(path, 'a') as f:
        f.write('x')
    with open(path) as f:
        if len(f.read()) < 3:
            raise RuntimeError('not yet')
    return 1
def join(results, params):
    return sum(results)
"""


def publish_raw(broker, student, body: bytes, props: pika.BasicProperties) -> None:
    conn = broker.connect(student)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("pimq.tasks", durable=True)
        ch.basic_publish("", "pimq.tasks", body, props)
    finally:
        conn.close()


def test_unparsable_message_is_dead_lettered_at_once(broker, student, cli, start_worker):
    worker = start_worker([student.vhost])
    publish_raw(broker, student, b"hello", pika.BasicProperties())
    publish_raw(broker, student, b"x", pika.BasicProperties(headers={"pimq-job": "zz"}))
    wait_until(lambda: queue_depth(broker, student, "pimq.dead") == 2)
    dead = drain(broker, student, "pimq.dead")
    assert [body for _h, body in dead] == [b"hello", b"x"]
    for headers, _body in dead:
        assert headers["pimq-reason"].startswith("unparsable message")
    assert queue_depth(broker, student, "pimq.tasks") == 0
    # the worker lives on
    assert run_json(cli, "noop", "--shards", "3")["result"] == 3
    assert worker.proc.poll() is None


def test_unknown_kind_on_worker_is_dead_lettered(broker, student, cli, start_worker, jobs_dir):
    # The head knows the kind, the worker's jobs dir does not.
    start_worker([student.vhost])
    other = jobs_dir.parent / "headjobs"
    other.mkdir()
    (other / "boom.py").write_text(BOOM)
    cli.env["PIMQ_JOBS_DIR"] = str(other)
    out = cli.run("run", "boom", "--shards", "1", "--timeout", "60")
    assert out.returncode == 1
    assert "unknown job kind 'boom'" in out.stderr
    dead = drain(broker, student, "pimq.dead")
    assert len(dead) == 1 and "unknown job kind" in dead[0][0]["pimq-reason"]


def test_job_that_raises_is_retried_then_dead_lettered(
    broker, student, cli, start_worker, jobs_dir
):
    (jobs_dir / "boom.py").write_text(BOOM)
    worker = start_worker([student.vhost])
    out = cli.run("run", "boom", "--shards", "2", "--timeout", "60")
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("pimq: shard ") and "ZeroDivisionError" in lines[-1]
    assert "Traceback" not in out.stderr
    wait_until(lambda: (queue_depth(broker, student, "pimq.dead") or 0) >= 1)
    wait_until(lambda: queue_depth(broker, student, "pimq.tasks") == 0)
    dead = drain(broker, student, "pimq.dead")
    assert 1 <= len(dead) <= 2  # the second shard may be cancelled before its last attempt
    for headers, body in dead:
        assert body == b"x"
        assert headers["pimq-reason"] == (
            "job raised on all 3 attempts: ZeroDivisionError: division by zero"
        )
        assert "Traceback" in headers["pimq-traceback"]
        assert headers["pimq-attempt"] == 2
    assert "attempt 1 of 3" in worker.text() and "attempt 2 of 3" in worker.text()


def test_flaky_job_succeeds_after_retries(student, cli, start_worker, jobs_dir, tmp_path):
    (jobs_dir / "flaky.py").write_text(FLAKY)
    start_worker([student.vhost])
    state = tmp_path / "flaky"
    state.mkdir()
    doc = run_json(cli, "flaky", str(state), "--shards", "4")
    assert doc["result"] == 4
    assert sorted(p.read_text() for p in state.iterdir()) == ["xxx"] * 4


def one_line_error(out, code: int, text: str) -> None:
    assert out.returncode == code, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("pimq: ") and text in lines[0], out.stderr


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("nosuchkind",), "unknown job kind 'nosuchkind'"),
        (("grep", "(oops", str(SHAKESPEARE)), "bad regular expression"),
        (("wordcount", "--word", "x", "/no/such/file"), "no such file: /no/such/file"),
        (("primes", "10", "--shards", "0"), "--shards must be between 1 and 10000"),
        (("primes", "10", "--shards", "100000000"), "--shards must be between 1 and 10000"),
    ],
)
def test_student_errors_are_one_line(cli, args, text):
    one_line_error(cli.run("run", *args), 2, text)


def test_wrong_password_and_broker_down(broker, student, cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"host: 127.0.0.1\nport: {broker.port}\nvhost: {student.vhost}\n"
        f"user: {student.user}\npassword: wrong\n"
    )
    bad.chmod(0o600)
    one_line_error(cli.run("run", "noop", "--config", str(bad)), 3, "wrong user name or password")
    other = broker.students[-1]
    bad.write_text(
        f"host: 127.0.0.1\nport: {broker.port}\nvhost: {other.vhost}\n"
        f"user: {student.user}\npassword: {student.password}\n"
    )
    one_line_error(cli.run("run", "noop", "--config", str(bad)), 3, "no access to vhost")
    one_line_error(cli.run("status", "--host", "127.0.0.2", "--config", str(bad)), 3, "")
    bad.write_text(
        f"host: 127.0.0.1\nport: 1\nvhost: {student.vhost}\n"
        f"user: {student.user}\npassword: {student.password}\n"
    )
    one_line_error(cli.run("run", "noop", "--config", str(bad)), 3, "cannot reach the broker")
    bad.chmod(0o644)
    one_line_error(cli.run("run", "noop", "--config", str(bad)), 2, "chmod 600")


def test_worker_config_errors_are_one_line(cli, tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("host: x\nuser: u\npassword: p\nvhosts: []\nflavour: mint\n")
    one_line_error(cli.run("worker", "--config", str(cfg)), 2, "unknown key(s): flavour")
    cfg.write_text("host: x\nuser: u\nvhosts: []\n")
    one_line_error(cli.run("worker", "--config", str(cfg)), 2, "missing key(s): password")


def test_no_secret_in_worker_log(broker, student, start_worker, cli):
    worker = start_worker([student.vhost])
    run_json(cli, "noop", "--shards", "2")
    worker.stop()
    assert WORKER_PASSWORD not in worker.text()
    assert json.dumps(WORKER_PASSWORD) not in worker.text()
