"""TLS to a real broker: its AMQPS listener, a test CA, the worker and the CLI.

The session broker (conftest) has a plaintext listener and an AMQPS one whose
certificate (``localhost``, 127.0.0.1) a test CA signed, configured with the
``ssl_options`` keys roles/pimq_broker writes.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import SHAKESPEARE, grep_count, run_json
from support.tls import make_ca


def test_job_over_tls_exact(broker, student, cli_for, start_worker):
    assert broker.tls_port and broker.ca is not None
    worker = start_worker([student.vhost], processes=2, where=broker.tls_lines())
    assert f"connected to localhost:{broker.tls_port} over TLS" in worker.text()
    cli = cli_for(student, broker.tls_lines())
    doc = run_json(cli, "wordcount", "--word", "more", str(SHAKESPEARE), "--shards", "5")
    assert doc["result"] == grep_count(SHAKESPEARE, "more")
    assert sum(doc["workers"].values()) == 5
    assert run_json(cli, "noop", "--shards", "40")["result"] == 40


def test_lab_verbs_and_status_over_tls_with_host(broker, student, cli_for):
    cli = cli_for(student, broker.tls_lines())
    # --host names the broker; the certificate must name it too (127.0.0.1 is in its SAN)
    out = cli.run("send", "tlsq", "over tls", "--host", "127.0.0.1")
    assert out.returncode == 0, out.stderr
    out = cli.run("receive", "tlsq", "--count", "1", "--host", "localhost")
    assert out.returncode == 0 and "over tls" in out.stdout, out.stderr
    out = cli.run("status")
    assert out.returncode == 0, out.stderr
    assert f"on localhost:{broker.tls_port} (TLS)" in out.stdout


def one_line_error(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 3, out.stderr
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_wrong_ca_refused(broker, student, cli_for, tmp_path):
    other = make_ca(tmp_path / "other", "not the room CA")
    cli = cli_for(student, broker.tls_lines(other.cert))
    line = one_line_error(cli.run("send", "q", "x"))
    assert f"broker at localhost:{broker.tls_port} failed TLS verification" in line
    # RabbitMQ sends its CA along: OpenSSL calls that chain "self-signed"
    assert re.search(
        r"\((self-signed certificate in certificate chain"
        r"|unable to get local issuer certificate)\)",
        line,
    ), line
    assert student.password not in line
    line = one_line_error(cli.run("run", "noop", "--shards", "2"))
    assert "failed TLS verification" in line


def test_wrong_ca_worker_says_why(broker, student, start_worker, tmp_path):
    other = make_ca(tmp_path / "other", "not the room CA")
    w = start_worker([student.vhost], where=broker.tls_lines(other.cert), wait=False)
    w.wait_for("failed TLS verification against the room CA")
    assert "connected" not in w.text()


def test_plaintext_to_the_tls_port_fails_clearly(broker, student, cli_for):
    cli = cli_for(student, f"host: 127.0.0.1\nport: {broker.tls_port}\n")
    line = one_line_error(cli.run("send", "q", "x"))
    assert f"broker at 127.0.0.1:{broker.tls_port}" in line
    assert "a TLS port? the config names no ca" in line


def test_tls_to_the_plaintext_port_fails_clearly(broker, student, cli_for):
    cli = cli_for(student, f"host: 127.0.0.1\nport: {broker.port}\nca: {broker.ca}\n")
    line = one_line_error(cli.run("send", "q", "x"))
    assert f"TLS handshake with the broker at 127.0.0.1:{broker.port} failed" in line


@pytest.fixture
def impostor(broker, tmp_path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 whose certificate the room CA signed for another
    name only: the CA check passes, the host name check must not."""
    from support.tls import TestCA

    ca = TestCA(broker.ca, broker.base / "tls" / "ca.key")
    issued = ca.issue(tmp_path / "impostor", "impostor", ("pi99",))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(issued.cert, issued.key)
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(8)
            except (OSError, ssl.SSLError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join()
    server.close()


def test_host_name_checked(broker, student, cli_for, impostor):
    cli = cli_for(student, f"host: 127.0.0.1\nport: {impostor}\nca: {broker.ca}\n")
    line = one_line_error(cli.run("send", "q", "x"))
    assert "failed TLS verification" in line and "mismatch" in line, line


def test_ca_file_missing_is_a_config_error(broker, student, cli_for, tmp_path: Path):
    cli = cli_for(student, f"host: localhost\nca: {tmp_path / 'nope.crt'}\n")
    out = cli.run("send", "q", "x")
    assert out.returncode == 2
    assert f"ca {tmp_path / 'nope.crt'} cannot be read" in out.stderr
