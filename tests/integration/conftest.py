"""A private RabbitMQ for the integration tests, plus workers and CLI helpers.

One broker per session (``tests/support/private_broker.py``, shared with the
benchmarks), laid out as in production: one user per student vhost with all
rights on it only, a ``pimq-worker`` user with ``^pimq\\.`` rights on every
student vhost, an admin user, and no ``guest``. Tests isolate themselves by
taking unused vhosts. ``PIMQ_RABBITMQ=trixie``: the broker is Debian trixie's
RabbitMQ 4.0 in a locally built container, every deprecated feature denied
(``make integration-rabbitmq4``); unset, the host's own (bookworm: 3.10).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.helpers import ADMIN_PASSWORD, WORKER_PASSWORD, WORKER_USER
from support.private_broker import Broker, Student, private_broker

VHOSTS = 100  # one per test that takes a student, with room to spare
REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(180))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    base = tmp_path_factory.mktemp("rabbit") / "node"
    with private_broker(
        base,
        VHOSTS,
        admin_password=ADMIN_PASSWORD,
        worker_password=WORKER_PASSWORD,
        management=True,
        tls=True,
        container=os.environ.get("PIMQ_RABBITMQ", ""),
    ) as b:
        yield b


@pytest.fixture
def student(broker: Broker, tmp_path: Path) -> Student:
    return broker.take()


def write_student_config(
    broker: Broker, student: Student, path: Path, where: str | None = None
) -> Path:
    """A student's config; ``where``: its host/port/ca lines (default: plaintext)."""
    where = where or f"host: 127.0.0.1\nport: {broker.port}\n"
    path.write_text(
        f"{where}vhost: {student.vhost}\nuser: {student.user}\n"
        f'password: "{student.password}"\nmanagement_port: {broker.management_port}\n'
    )
    path.chmod(0o600)
    return path


@dataclass
class Cli:
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pimq", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "pimq", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "jobs"
    d.mkdir()
    return d


def make_cli(
    broker: Broker, student: Student, tmp_path: Path, jobs_dir: Path, where: str | None = None
) -> Cli:
    cfg = write_student_config(broker, student, tmp_path / f"{student.vhost}.yaml", where)
    env = {
        **os.environ,
        "PIMQ_CONFIG": str(cfg),
        "PIMQ_JOBS_DIR": str(jobs_dir),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PYTHONUNBUFFERED": "1",
    }
    return Cli(env)


@pytest.fixture
def cli(broker: Broker, student: Student, tmp_path: Path, jobs_dir: Path) -> Cli:
    return make_cli(broker, student, tmp_path, jobs_dir)


@pytest.fixture
def cli_for(broker: Broker, tmp_path: Path, jobs_dir: Path):
    """A Cli for a student; ``where``: the config's host/port/ca lines (e.g.
    ``broker.tls_lines()``; default plaintext to the broker's AMQP port)."""

    def make(student: Student, where: str | None = None) -> Cli:
        return make_cli(broker, student, tmp_path, jobs_dir, where)

    return make


class WorkerProc:
    def __init__(self, proc: subprocess.Popen, log: Path, vhosts: list[str]) -> None:
        self.proc = proc
        self.log = log
        self.vhosts = vhosts

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text().count(needle) >= count:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {needle!r} x{count}:\n{self.text()}")

    def wait_ready(self, timeout: float = 60) -> None:
        for vhost in self.vhosts:
            self.wait_for(f"vhost {vhost}: connected", timeout=timeout)

    def stop(self, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def start_worker(broker: Broker, tmp_path: Path, jobs_dir: Path):
    started: list[WorkerProc] = []

    def start(
        vhosts: list[str],
        processes: int = 2,
        heartbeat: int = 30,
        prefetch: int = 0,
        extra: tuple[str, ...] = (),
        wait: bool = True,
        where: str | None = None,
        extra_config: str = "",
    ) -> WorkerProc:
        """``where``: the config's host/port/ca lines (default plaintext)."""
        n = len(started)
        cfg = tmp_path / f"worker{n}.yaml"
        where = where or f"host: 127.0.0.1\nport: {broker.port}\n"
        cfg.write_text(
            f"{where}user: {WORKER_USER}\n"
            f'password: "{WORKER_PASSWORD}"\nvhosts: {json.dumps(vhosts)}\n'
            f"processes: {processes}\nheartbeat: {heartbeat}\nprefetch: {prefetch}\n" + extra_config
        )
        cfg.chmod(0o600)
        log = tmp_path / f"worker{n}.log"
        env = {**os.environ, "PIMQ_JOBS_DIR": str(jobs_dir), "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pimq", "worker", "--config", str(cfg), *extra],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        w = WorkerProc(proc, log, vhosts)
        started.append(w)
        if wait:
            w.wait_ready()
        return w

    yield start
    for w in started:
        w.stop(timeout=10)
        w.kill()
