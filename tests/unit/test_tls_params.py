"""Connection parameters with and without the room CA, and the one-line TLS errors."""

from __future__ import annotations

import ssl
from pathlib import Path

import pika.exceptions as px
import pytest
from support.tls import make_ca

from pimq.errors import BrokerError
from pimq.protocol import amqp


def test_no_ca_is_plaintext() -> None:
    assert amqp.tls_options("head", None) is None
    assert amqp.parameters("head", 5672, "v", "u", "p").ssl_options is None


def test_ca_gives_a_verifying_context_for_the_host(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    params = amqp.parameters("pihead", 5671, "v", "u", "p", ca=str(ca.cert))
    opts = params.ssl_options
    assert opts is not None and opts.server_hostname == "pihead"
    ctx = opts.context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    # only the room CA: the system's trust store is not loaded
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "pimq test CA"),),)]


def test_unusable_ca_file_is_a_broker_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    with pytest.raises(BrokerError, match=f"cannot use the CA certificate {bad}"):
        amqp.tls_options("head", str(bad))


def test_describe_tls_failures() -> None:
    verify = ssl.SSLCertVerificationError(1, "x")
    verify.verify_message = "Hostname mismatch, certificate is not valid for 'pi9'."
    line = amqp.describe(verify, "pi9", 5671, "v", "alice", tls=True)
    assert line == (
        "broker at pi9:5671 failed TLS verification against the room CA (Hostname mismatch, "
        "certificate is not valid for 'pi9'.): is this the room's broker and its name?"
    )
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    wrong.reason = "WRONG_VERSION_NUMBER"
    assert amqp.describe(wrong, "h", 5672, "v", "u", tls=True) == (
        "TLS handshake with the broker at h:5672 failed (wrong version number)"
    )
    plain = px.IncompatibleProtocolError("StreamLostError: EOF")
    assert "a TLS port? the config names no ca" in amqp.describe(plain, "h", 5671, "v", "u")
    assert amqp.describe(plain, "h", 5671, "v", "u", tls=True) == (
        "lost the connection to the broker at h:5671"
    )
