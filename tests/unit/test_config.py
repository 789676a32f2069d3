from __future__ import annotations

from pathlib import Path

import pytest

from pimq.config import load_student_config, load_worker_config, student_config_path
from pimq.errors import ConfigError

WORKER = """host: head
port: 5672
user: pimq-worker
password: "s3cret"
vhosts: [alice, bob]
processes: 0
heartbeat: 30
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_worker_config(tmp_path: Path) -> None:
    cfg = load_worker_config(write(tmp_path, WORKER))
    assert cfg.vhosts == ("alice", "bob") and cfg.host == "head" and cfg.heartbeat == 30
    assert cfg.pool_size() >= 1
    assert "s3cret" not in repr(cfg)


def test_worker_config_name_and_dataset_quota(tmp_path: Path) -> None:
    cfg = load_worker_config(write(tmp_path, WORKER))
    assert cfg.name == "" and cfg.dataset_quota() == 1024 * 2**20
    cfg = load_worker_config(write(tmp_path, WORKER + "name: pi7\ndataset_quota_mb: 3\n"))
    assert cfg.name == "pi7" and cfg.dataset_quota() == 3 * 2**20


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (WORKER + "colour: red\n", "unknown key(s): colour"),
        (WORKER + "dataset_quota_mb: -1\n", "dataset_quota_mb must be an integer"),
        (WORKER + "name: ''\n", "name must be a non-empty string"),
        (WORKER.replace("user: pimq-worker\n", ""), "missing key(s): user"),
        (WORKER.replace("port: 5672", "port: lots"), "port must be an integer"),
        (WORKER.replace("[alice, bob]", "alice"), "vhosts must be a list"),
        ("- a\n- b\n", "must be a mapping"),
        ("host: [\n", "not valid YAML"),
    ],
)
def test_worker_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_worker_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_worker_config(tmp_path / "nope.yaml")


STUDENT = "host: head\nport: 5672\nvhost: alice\nuser: alice\npassword: pw\n"


def test_student_config_and_host_override(tmp_path: Path) -> None:
    path = write(tmp_path, STUDENT)
    assert load_student_config(path).host == "head"
    assert load_student_config(path, host="buddy").host == "buddy"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_student_config_must_be_private(tmp_path: Path, mode: int) -> None:
    with pytest.raises(ConfigError, match="chmod 600"):
        load_student_config(write(tmp_path, STUDENT, mode))


def test_student_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIMQ_CONFIG", "/env/path.yaml")
    assert student_config_path("/cli.yaml") == Path("/cli.yaml")
    assert student_config_path() == Path("/env/path.yaml")
    monkeypatch.delenv("PIMQ_CONFIG")
    assert student_config_path().name == "config.yaml"


STUDENT_TLS = "vhost: alice\nuser: alice\npassword: pw\nhost: pihead\n"


def test_student_config_without_ca_is_plaintext_5672(tmp_path: Path) -> None:
    cfg = load_student_config(write(tmp_path, STUDENT_TLS))
    assert (cfg.ca, cfg.port) == (None, 5672)


def test_student_config_with_ca_defaults_to_5671(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = load_student_config(write(tmp_path, STUDENT_TLS + f"ca: {ca}\n"))
    assert (cfg.ca, cfg.port) == (str(ca), 5671)
    cfg = load_student_config(write(tmp_path, STUDENT_TLS + "ca: ca.crt\nport: 6000\n"))
    assert (cfg.ca, cfg.port) == (str(ca), 6000)  # relative to the config's folder


def test_worker_config_with_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    cfg = load_worker_config(write(tmp_path, WORKER.replace("port: 5672\n", f"ca: {ca}\n")))
    assert (cfg.ca, cfg.port) == (str(ca), 5671)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ca: /nonexistent/ca.crt\n", "ca /nonexistent/ca.crt cannot be read (No such file"),
        ("ca: ''\n", "ca must be a non-empty string"),
        ("ca: [a]\n", "ca must be a non-empty string"),
    ],
)
def test_bad_ca(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_student_config(write(tmp_path, STUDENT_TLS + line))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_worker_config(write(tmp_path, WORKER + line))
