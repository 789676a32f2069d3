"""The lab verbs' pure logic: the transient-queue gate, versions, RPC answers, config keys."""

from __future__ import annotations

from pathlib import Path

import pika.exceptions as px
import pytest

from pimq.config import load_student_config
from pimq.errors import ConfigError, UsageError
from pimq.lab import verbs
from pimq.protocol.session import parse_version


@pytest.mark.parametrize(
    ("text", "version"),
    [("3.10.8", (3, 10, 8)), ("4.0.5", (4, 0, 5)), ("3.13.7+rc.1", (3, 13, 7)), ("junk", (0,))],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert parse_version(text) == version


class StubSession:
    """Only what ensure_queue asks of a Session (a queue that does not exist yet);
    ``denied``: the broker refuses transient queues as RabbitMQ 4.0 does when its
    config denies ``transient_nonexcl_queues`` (the real one: tests/integration)."""

    def __init__(self, version: tuple[int, ...], denied: bool = False) -> None:
        self.version = version
        self.denied = denied
        self.declared: list[tuple[str, bool]] = []

    def probe_queue(self, queue: str) -> None:
        return None

    def server_version(self) -> tuple[int, ...]:
        return self.version

    def ensure_queue(self, queue: str, durable: bool = True) -> None:
        if self.denied and not durable:
            raise px.ConnectionClosedByBroker(
                541, "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated."
            )
        self.declared.append((queue, durable))


def test_transient_queues_where_the_broker_permits_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    old = StubSession((3, 10, 8))
    verbs.ensure_queue(old, "t", durable=False)  # type: ignore[arg-type]
    assert old.declared == [("t", False)]
    assert capsys.readouterr().err == ""
    permits = StubSession((4, 0, 5))  # 4.0's default: permitted, deprecated
    verbs.ensure_queue(permits, "t", durable=False)  # type: ignore[arg-type]
    assert permits.declared == [("t", False)]
    assert capsys.readouterr().err == ""  # the broker logs the deprecation itself
    denies = StubSession((4, 0, 5), denied=True)
    with pytest.raises(UsageError) as refused:
        verbs.ensure_queue(denies, "t", durable=False)  # type: ignore[arg-type]
    assert "RabbitMQ 4.0.5) does not permit transient queues" in str(refused.value)
    assert "--durable" in str(refused.value)
    assert denies.declared == []
    verbs.ensure_queue(denies, "d")  # type: ignore[arg-type]
    assert denies.declared == [("d", True)]


def test_rpc_answers() -> None:
    assert [verbs.fib(n) for n in range(11)] == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55]
    assert verbs._rpc_answer("fib", "30") == "832040"
    assert verbs._rpc_answer("fib", "x").startswith("error: fib needs a whole number")
    assert verbs._rpc_answer("fib", "-1").startswith("error: fib needs 0 <= n")
    assert verbs._rpc_answer("fib", str(verbs.RPC_MAX_FIB + 1)).startswith("error")
    assert verbs._rpc_answer("upper", "hi") == "HI"
    assert verbs._rpc_answer("echo", "hi") == "hi"


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"host: head\nvhost: v\nuser: u\npassword: p\n{extra}")
    path.chmod(0o600)
    return path


def test_management_base_from_the_config(tmp_path: Path) -> None:
    assert load_student_config(_config(tmp_path, "")).management_base() == "http://head:15672"
    cfg = load_student_config(_config(tmp_path, "management_port: 15999\n"))
    assert cfg.management_base() == "http://head:15999"
    cfg = load_student_config(_config(tmp_path, "management_url: https://head:15671/\n"))
    assert cfg.management_base() == "https://head:15671"
    # a buddy's Pi: its own API, not the head's
    cfg = load_student_config(_config(tmp_path, "management_url: https://head:1/\n"), "pi02")
    assert cfg.management_base() == "http://pi02:15672"
    with pytest.raises(ConfigError, match="management_url must be an http"):
        load_student_config(_config(tmp_path, "management_url: ftp://x\n"))
