"""A private RabbitMQ for the integration tests, plus workers and CLI helpers.

One broker per session (a ``rabbitmq-server`` subprocess in its own process
group, data under a tmp dir). Its definitions are loaded at boot, mirroring
production: one user per student vhost with all rights on it only, a
``pimq-worker`` user with ``^pimq\\.`` rights on every student vhost, an admin
user, and no ``guest``. Tests isolate themselves by taking unused vhosts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pytest
from helpers import ADMIN_PASSWORD, ADMIN_USER, WORKER_PASSWORD, WORKER_USER

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
VHOSTS = 40
REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(180))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def password_hash(password: str) -> str:
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


@dataclass
class Student:
    vhost: str
    user: str
    password: str = field(repr=False)


@dataclass
class Broker:
    node: str
    port: int
    env: dict[str, str]
    base: Path
    students: list[Student]
    proc: subprocess.Popen | None = None
    taken: int = 0

    def ctl(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def take(self) -> Student:
        student = self.students[self.taken]
        self.taken += 1
        return student

    def connect(self, student: Student) -> pika.BlockingConnection:
        return pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1",
                self.port,
                student.vhost,
                pika.PlainCredentials(student.user, student.password),
            )
        )

    def restart_app(self) -> None:
        self.ctl("stop_app")
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60")


def _definitions(students: list[Student]) -> dict:
    users = [
        {
            "name": ADMIN_USER,
            "password_hash": password_hash(ADMIN_PASSWORD),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["administrator"],
        },
        {
            "name": WORKER_USER,
            "password_hash": password_hash(WORKER_PASSWORD),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        },
    ]
    permissions = []
    for s in students:
        users.append(
            {
                "name": s.user,
                "password_hash": password_hash(s.password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
        )
        permissions += [
            {"user": s.user, "vhost": s.vhost, "configure": ".*", "write": ".*", "read": ".*"},
            {
                "user": WORKER_USER,
                "vhost": s.vhost,
                "configure": "^pimq\\.",
                "write": "^pimq\\.",
                "read": "^pimq\\.",
            },
            {"user": ADMIN_USER, "vhost": s.vhost, "configure": ".*", "write": ".*", "read": ".*"},
        ]
    return {
        "users": users,
        "vhosts": [{"name": s.vhost} for s in students],
        "permissions": permissions,
    }


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    base = tmp_path_factory.mktemp("rabbit")
    students = [Student(f"s{i:02d}", f"stud{i:02d}", secrets.token_hex(8)) for i in range(VHOSTS)]
    (base / "definitions.json").write_text(json.dumps(_definitions(students)))
    (base / "enabled_plugins").write_text("[].\n")
    (base / "rabbitmq.conf").write_text(
        "\n".join(
            [
                "listeners.tcp.default = 127.0.0.1:0",
                f"load_definitions = {base / 'definitions.json'}",
                f"default_user = {ADMIN_USER}",
                f"default_pass = {ADMIN_PASSWORD}",
                "disk_free_limit.absolute = 10MB",
                "vm_memory_high_watermark.relative = 0.2",
                "log.console = false",
                "",
            ]
        )
    )
    port = free_port()
    conf = (
        (base / "rabbitmq.conf")
        .read_text()
        .replace("listeners.tcp.default = 127.0.0.1:0", f"listeners.tcp.default = 127.0.0.1:{port}")
    )
    (base / "rabbitmq.conf").write_text(conf)
    node = f"pimqtest-{secrets.token_hex(4)}@localhost"
    env = {
        **os.environ,
        "HOME": str(base),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
    }
    (base / "rabbitmq-env.conf").write_text("")
    b = Broker(node, port, env, base, students)
    log = open(base / "server.out", "wb")  # noqa: SIM115
    b.proc = subprocess.Popen(
        [str(RABBIT_BIN / "rabbitmq-server")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while True:  # await_startup fails at once until the node has registered
            try:
                b.ctl("await_startup", "--timeout", "120", timeout=150)
                break
            except RuntimeError:
                if time.monotonic() > deadline or b.proc.poll() is not None:
                    raise
                time.sleep(0.5)
        yield b
    finally:
        try:
            b.ctl("stop", timeout=60)
        except Exception:
            pass
        try:
            os.killpg(b.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        b.proc.wait(timeout=30)
        log.close()


@pytest.fixture
def student(broker: Broker, tmp_path: Path) -> Student:
    return broker.take()


def write_student_config(broker: Broker, student: Student, path: Path) -> Path:
    path.write_text(
        f"host: 127.0.0.1\nport: {broker.port}\nvhost: {student.vhost}\n"
        f'user: {student.user}\npassword: "{student.password}"\n'
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


def make_cli(broker: Broker, student: Student, tmp_path: Path, jobs_dir: Path) -> Cli:
    cfg = write_student_config(broker, student, tmp_path / f"{student.vhost}.yaml")
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
    def make(student: Student) -> Cli:
        return make_cli(broker, student, tmp_path, jobs_dir)

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
    ) -> WorkerProc:
        n = len(started)
        cfg = tmp_path / f"worker{n}.yaml"
        cfg.write_text(
            f"host: 127.0.0.1\nport: {broker.port}\nuser: {WORKER_USER}\n"
            f'password: "{WORKER_PASSWORD}"\nvhosts: {json.dumps(vhosts)}\n'
            f"processes: {processes}\nheartbeat: {heartbeat}\nprefetch: {prefetch}\n"
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
