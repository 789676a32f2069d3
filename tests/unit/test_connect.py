"""pimq.parameters() and pimq env: what a student's own script gets, and what it never shows."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pika
import pytest

import pimq
from pimq.client import connect
from pimq.errors import ConfigError, UsageError

PASSWORD = "p@ss w'rd/%"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f'host: head\nport: 5673\nvhost: al/ice\nuser: alice\npassword: "{PASSWORD}"\n')
    path.chmod(0o600)
    monkeypatch.setenv("PIMQ_CONFIG", str(path))
    monkeypatch.delenv("PIMQ_HOST", raising=False)
    return path


def _exports(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        word, assignment = shlex.split(line)
        assert word == "export"
        key, _, value = assignment.partition("=")
        out[key] = value
    return out


def test_parameters_come_from_the_config_file(config: Path) -> None:
    params = pimq.parameters()
    assert (params.host, params.port, params.virtual_host) == ("head", 5673, "al/ice")
    assert params.credentials.username == "alice" and params.credentials.password == PASSWORD
    assert params.heartbeat == 30


def test_host_and_heartbeat_overrides(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pimq.parameters(host="pi02", heartbeat=5).host == "pi02"
    assert pimq.parameters(heartbeat=5).heartbeat == 5
    monkeypatch.setenv("PIMQ_HOST", "pi03")
    assert pimq.parameters().host == "pi03"


def test_an_unsafe_config_file_is_refused(config: Path) -> None:
    config.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        pimq.parameters()


def test_env_without_password(config: Path) -> None:
    lines = connect.env(None, None, with_password=False, isatty=True)
    values = _exports(lines)
    assert values == {
        "PIMQ_CONFIG": str(config),
        "PIMQ_HOST": "head",
        "PIMQ_PORT": "5673",
        "PIMQ_VHOST": "al/ice",
        "PIMQ_USER": "alice",
    }
    assert not any("w'rd" in line or "w%27rd" in line for line in lines)


def test_env_with_password_only_into_a_pipe(config: Path) -> None:
    with pytest.raises(UsageError, match="never onto the screen"):
        connect.env(None, None, with_password=True, isatty=True)
    values = _exports(connect.env(None, "pi02", with_password=True, isatty=False))
    assert values["PIMQ_PASSWORD"] == PASSWORD
    assert values["PIMQ_HOST"] == "pi02"
    params = pika.URLParameters(values["AMQP_URL"])
    assert (params.host, params.port, params.virtual_host) == ("pi02", 5673, "al/ice")
    assert params.credentials.password == PASSWORD and params.heartbeat == 30


def test_env_lines_evaluate_in_a_shell(config: Path) -> None:
    script = "\n".join(connect.env(None, None, True, False)) + '\nprintf %s "$PIMQ_PASSWORD"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == PASSWORD


def test_celery_config_reaches_the_students_vhost(config: Path) -> None:
    from urllib.parse import unquote, urlsplit

    settings = pimq.celery_config()
    url = urlsplit(settings["broker_url"])
    assert (url.scheme, url.hostname, url.port) == ("amqp", "head", 5673)
    assert (unquote(url.username or ""), unquote(url.password or "")) == ("alice", PASSWORD)
    assert unquote(url.path[1:]) == "al/ice"
    assert settings["result_backend"] == "rpc://"
    assert "broker_use_ssl" not in settings  # no CA in this config: no TLS


def test_celery_config_with_the_room_ca_verifies_the_broker(config: Path, tmp_path: Path) -> None:
    import ssl

    from support.tls import make_ca

    ca = make_ca(tmp_path / "ca").cert
    config.write_text(config.read_text() + f"ca: {ca}\n")
    settings = pimq.celery_config(host="pi02")
    assert settings["broker_url"].startswith("amqps://alice:")
    assert "@pi02:5673/" in settings["broker_url"]
    assert settings["broker_use_ssl"] == {
        "ca_certs": str(ca),
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "pi02",
    }
