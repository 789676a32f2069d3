"""A private RabbitMQ on loopback, for the integration tests and the benchmarks.

One ``rabbitmq-server`` subprocess in its own process group, with its own
``epmd`` on a private port, all state under a scratch directory, so nothing
outlives it; users and vhosts loaded from a definitions file at boot
(production layout: one user per student vhost, ``pimq-worker`` with
``^pimq\\.`` rights on every student vhost, an admin user, no ``guest``);
ready when ``rabbitmqctl await_startup`` says so.

``container``: the same broker, but the ``rabbitmq-server`` of a locally built
Debian image (``tests/harness/image.sh --release trixie --broker``: RabbitMQ 4.0,
which bookworm cannot install), run in a container on the host's network with
the scratch directory mounted at the same path, so ports, certificates and
definitions are the same as for a host broker; ``rabbitmqctl`` runs in it.
RabbitMQ 4's deprecated features are all denied there (:data:`DENIED_FEATURES`).

Run it alone to poke at it: ``PYTHONPATH=tests python -m support.private_broker
[trixie]`` (Ctrl-C stops it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
WORKER_USER = "pimq-worker"
ADMIN_USER = "pimq-admin"
#: Vhosts for the peers (Celery, the join pattern, the bare pika loop).
PEER_VHOSTS = ("celery", "join1", "join2", "join3", "bare")
#: RabbitMQ 4.0's deprecated features (``rabbitmqctl list_deprecated_features``
#: on 4.0.5), every one denied in a 4.x test broker's config, so pimq is proven
#: to need none of them; tests/integration/test_broker_release.py checks the
#: broker lists no other.
DENIED_FEATURES = (
    "amqp_address_v1",
    "classic_queue_mirroring",
    "global_qos",
    "management_metrics_collection",
    "queue_master_locator",
    "ram_node_type",
    "transient_nonexcl_queues",
)
#: the releases whose RabbitMQ a container runs (the host runs its own)
CONTAINER_RELEASES = ("trixie",)


#: the ports :func:`free_port` has handed out (never twice in one process)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now on every address, from below the kernel's ephemeral range:
    a port the kernel picks (bind to 0) is one it may give the next outgoing
    connection of any process on the machine (the other suites running beside
    this one) before the broker binds it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = 10000 + secrets.randbelow(max(low - 10000, 1000))
        if port in _handed_out:
            continue
        try:
            with socket.socket() as s:
                s.bind(("0.0.0.0", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between 10000 and {low}")


def password_hash(password: str) -> str:
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


@dataclass(frozen=True)
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
    admin_password: str = field(repr=False)
    worker_password: str = field(repr=False)
    version: str = "?"
    server_pid: int = 0
    #: the management API's port (0: the plugin is off)
    management_port: int = 0
    taken: int = 0
    #: the AMQPS listener's port (0: none) and the CA that signed its certificate
    tls_port: int = 0
    ca: Path | None = None
    #: the container the broker runs in ("": on the host)
    container: str = ""
    #: the deprecated features its config denies
    denied: tuple[str, ...] = ()

    def url(self, vhost: str) -> str:
        """AMQP URL of the admin user on ``vhost`` (for the peers)."""
        return (
            f"amqp://{ADMIN_USER}:{quote(self.admin_password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(vhost, safe='')}"
        )

    def ctl(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(
            [*self._in_container(), str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def _in_container(self) -> list[str]:
        """The ``docker exec`` prefix that runs a command beside the broker ([]: on the host)."""
        if not self.container:
            return []
        passed = [f"--env={k}={v}" for k, v in self.env.items() if k in _CONTAINER_ENV]
        return ["docker", "exec", *passed, self.container]

    def take(self) -> Student:
        """A student vhost no one has used yet (tests isolate themselves so)."""
        student = self.students[self.taken]
        self.taken += 1
        return student

    def connect(self, student: Student, **params):
        """A blocking connection as ``student``; ``params``: more ConnectionParameters."""
        import pika  # only the callers that connect need it

        return pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1",
                self.port,
                student.vhost,
                pika.PlainCredentials(student.user, student.password),
                **params,
            )
        )

    def status(self) -> dict:
        """``rabbitmqctl status`` as JSON (memory, alarms, disk free, limits)."""
        return json.loads(self.ctl("status", "--formatter", "json"))

    def log_text(self) -> str:
        """The node's log file (warnings and above: alarms are logged there)."""
        return "".join(
            p.read_text(errors="replace") for p in sorted((self.base / "log").glob("*.log"))
        )

    def restart_app(self) -> None:
        """Restart the broker as ``systemctl restart rabbitmq-server`` would for the
        tests: on the host ``stop_app``/``start_app``; in a container the whole node
        (``rabbitmqctl shutdown``, ``docker start``), because RabbitMQ 4.0 with
        ``transient_nonexcl_queues`` denied refuses ``start_app`` while an exclusive
        queue of a connection open at ``stop_app`` is still in its metadata store
        (``failed_to_deny_deprecated_features``; a node restart clears them)."""
        if self.container:  # the node stops (its container exits), then boots again
            try:  # its exit status is no guide: it may lose the node as it goes down
                self.ctl("shutdown", timeout=120)
            except RuntimeError:
                pass
            subprocess.run(["docker", "stop", "--time", "60", self.container], capture_output=True)
            out = subprocess.run(
                ["docker", "start", self.container], capture_output=True, text=True, timeout=120
            )
            if out.returncode != 0:
                raise RuntimeError(f"docker start {self.container}: {out.stderr}")
            self.server_pid = _container_pid(self.container)
            _await_startup(self, lambda: _container_pid(self.container) == 0)
            return
        self.ctl("stop_app")
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60")

    def tls_lines(self, ca: Path | None = None, host: str = "localhost") -> str:
        """Config lines for AMQPS to this broker verified against ``ca`` (the
        broker's own CA unless given), or "" when ``ca`` is None and no TLS."""
        ca = ca or self.ca
        if ca is None or not self.tls_port:
            return ""
        return f"host: {host}\nport: {self.tls_port}\nca: {ca}\n"

    def student_config(self, student: Student, path: Path, tls: bool = False) -> Path:
        where = self.tls_lines() if tls else f"host: 127.0.0.1\nport: {self.port}\n"
        management = f"management_port: {self.management_port}\n" if self.management_port else ""
        path.write_text(
            f"{where}vhost: {student.vhost}\nuser: {student.user}\n"
            f'password: "{student.password}"\n{management}'
        )
        path.chmod(0o600)
        return path

    def worker_config(
        self,
        vhosts: list[str],
        path: Path,
        processes: int = 0,
        prefetch: int = 0,
        tls: bool = False,
    ) -> Path:
        where = self.tls_lines() if tls else f"host: 127.0.0.1\nport: {self.port}\n"
        path.write_text(
            f"{where}user: {WORKER_USER}\n"
            f'password: "{self.worker_password}"\nvhosts: {json.dumps(vhosts)}\n'
            f"processes: {processes}\nprefetch: {prefetch}\n"
        )
        path.chmod(0o600)
        return path


def _definitions(
    students: list[Student], admin_pw: str, worker_pw: str, student_tags: list[str]
) -> dict:
    def user(name: str, password: str, tags: list[str]) -> dict:
        return {
            "name": name,
            "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": tags,
        }

    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    users = [user(ADMIN_USER, admin_pw, ["administrator"]), user(WORKER_USER, worker_pw, [])]
    permissions = []
    for s in students:
        users.append(user(s.user, s.password, student_tags))
        permissions += [
            {"user": s.user, "vhost": s.vhost, **everything},
            {
                "user": WORKER_USER,
                "vhost": s.vhost,
                "configure": "^pimq\\.",
                "write": "^pimq\\.",
                "read": "^pimq\\.",
            },
            {"user": ADMIN_USER, "vhost": s.vhost, **everything},
        ]
    for vhost in PEER_VHOSTS:
        permissions.append({"user": ADMIN_USER, "vhost": vhost, **everything})
    vhosts = [{"name": s.vhost} for s in students] + [{"name": v} for v in PEER_VHOSTS]
    return {"users": users, "vhosts": vhosts, "permissions": permissions}


def _start_epmd(port: int, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["epmd", "-port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"epmd did not listen on port {port}")


#: the variables a broker in a container gets (the host's others mean nothing there)
_CONTAINER_ENV = (
    "HOME",
    "ERL_EPMD_PORT",
    "RABBITMQ_NODENAME",
    "RABBITMQ_NODE_PORT",
    "RABBITMQ_DIST_PORT",
    "RABBITMQ_MNESIA_BASE",
    "RABBITMQ_LOG_BASE",
    "RABBITMQ_PID_FILE",
    "RABBITMQ_CONFIG_FILE",
    "RABBITMQ_ENABLED_PLUGINS_FILE",
    "RABBITMQ_CONF_ENV_FILE",
    "RABBITMQ_ADVANCED_CONFIG_FILE",
)


def broker_image(release: str) -> str:
    """The locally built image with ``release``'s rabbitmq-server (built once, cached)."""
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [str(repo / "tests/harness/image.sh"), "--release", release, "--broker"],
        stdout=subprocess.PIPE,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"could not build the {release} RabbitMQ image (see above)")
    return out.stdout.strip().splitlines()[-1]


def _start_in_container(image: str, name: str, env: dict[str, str], base: Path) -> None:
    """Run epmd and ``rabbitmq-server`` in a detached container of ``image`` on the
    host's network, ``base`` mounted at its own path (its output: ``docker logs``)."""
    passed = [f"--env={k}={env[k]}" for k in _CONTAINER_ENV]
    run = [
        "docker", "run", "--detach", "--name", name, "--label", "pimq.test-broker=1",
        "--network", "host", "--volume", f"{base}:{base}", *passed, image, "sh", "-c",
        f'epmd -port {env["ERL_EPMD_PORT"]} -daemon && exec {RABBIT_BIN / "rabbitmq-server"}',
    ]  # fmt: skip
    out = subprocess.run(run, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"could not start the broker's container: {out.stderr}")


class BrokerDied(RuntimeError):
    """The broker's server (or container) ended before it was up."""


def _await_startup(broker: Broker, gone: Callable[[], bool]) -> None:
    """Until ``rabbitmqctl await_startup`` succeeds (it fails at once until the node
    has registered); ``gone``: the server is no more (then fail at once, with
    the end of its output)."""
    deadline = time.monotonic() + 150
    while True:
        try:
            broker.ctl("await_startup", "--timeout", "120", timeout=150)
            return
        except RuntimeError as e:
            if gone():
                raise BrokerDied(f"{e}\nits output ends:\n{_output_tail(broker)}") from e
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _output_tail(broker: Broker, lines: int = 40) -> str:
    """The last lines of the broker's console output and log files."""
    if broker.container:
        out = subprocess.run(
            ["docker", "logs", "--tail", str(lines), broker.container],
            capture_output=True,
            text=True,
        )
        text = out.stdout + out.stderr
    else:
        path = broker.base / "server.out"
        text = path.read_text(errors="replace") if path.exists() else ""
    text += broker.log_text()
    return "\n".join(text.splitlines()[-lines:])


def kill_group(proc: subprocess.Popen | None, sig: int = signal.SIGKILL) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


@contextmanager
def private_broker(
    base: Path,
    vhosts: int = 60,
    extra_conf: tuple[str, ...] = (),
    admin_password: str | None = None,
    worker_password: str | None = None,
    management: bool = False,
    tls: bool = False,
    container: str = "",
    disk_mb: int = 0,
) -> Iterator[Broker]:
    """Start a private broker with ``vhosts`` student vhosts ``s01``..; stop it after.

    ``extra_conf``: more ``rabbitmq.conf`` lines (experiments, e.g. ``frame_max``);
    the admin's and the worker's passwords are random unless given. ``management``:
    the management plugin on a private loopback port, students tagged ``management``
    as the playbooks tag them (off by default: the benchmarks measure without it).
    ``tls``: an AMQPS listener too (``Broker.tls_port``), its certificate for ``localhost``
    and 127.0.0.1 signed by a test CA made here (``Broker.ca``), configured with
    the same ``ssl_options`` keys as ``roles/pimq_broker``. ``container``: a release
    of :data:`CONTAINER_RELEASES` whose RabbitMQ runs in a container (module doc).
    ``disk_mb``: the broker's data directory on a tmpfs of that size (root only),
    so its free disk is its own, whatever else the machine writes (the flood test
    sets a disk alarm close to it)."""
    if container and container not in CONTAINER_RELEASES:
        raise ValueError(f"no RabbitMQ container for {container!r}: {CONTAINER_RELEASES}")
    image = broker_image(container) if container else ""
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    if disk_mb:
        (base / "mnesia").mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={disk_mb}m", "tmpfs", str(base / "mnesia")],
            check=True,
        )
    students = [
        Student(f"s{i:02d}", f"stud{i:02d}", secrets.token_hex(8)) for i in range(1, vhosts + 1)
    ]
    admin_pw = admin_password or "admin-" + secrets.token_hex(6)
    worker_pw = worker_password or "worker-" + secrets.token_hex(6)
    tags = ["management"] if management else []
    (base / "definitions.json").write_text(
        json.dumps(_definitions(students, admin_pw, worker_pw, tags))
    )
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n" if management else "[].\n")
    (base / "rabbitmq-env.conf").write_text("")
    tls_files: tuple[Path, Path, Path] | None = None
    if tls:
        from support.tls import make_ca  # only TLS brokers need openssl

        ca = make_ca(base / "tls")
        issued = ca.issue(base / "tls", "broker", ("localhost", "127.0.0.1"))
        tls_files = (ca.cert, issued.cert, issued.key)
    broker: Broker | None = None
    epmd: subprocess.Popen | None = None
    server: subprocess.Popen | None = None
    try:
        for attempt in (1, 2):  # a second boot, on new ports, if the first died starting
            broker = _configure(
                base, image, students, admin_pw, worker_pw, management, tls_files, extra_conf
            )
            epmd, server = _boot(broker, image)
            try:
                _await_startup(broker, _gone(broker, server))
                break
            except BrokerDied as died:
                if attempt == 2:
                    raise
                print(f"the broker died starting; once more on new ports. {died}", file=sys.stderr)
                _stop(broker, epmd, server)
                shutil.rmtree(base / "log", ignore_errors=True)  # the next node's log alone
        assert broker is not None
        try:
            status = broker.status()
            broker.version = str(status.get("rabbitmq_version", "?"))
        except (RuntimeError, ValueError):
            pass
        yield broker
    finally:
        if broker is not None:
            _stop(broker, epmd, server)
        if disk_mb:
            subprocess.run(["umount", "--lazy", str(base / "mnesia")], check=False)


def _configure(
    base: Path,
    image: str,
    students: list[Student],
    admin_pw: str,
    worker_pw: str,
    management: bool,
    tls_files: tuple[Path, Path, Path] | None,
    extra_conf: tuple[str, ...],
) -> Broker:
    """The broker's ``rabbitmq.conf`` and environment, on ports free now, and the
    :class:`Broker` that describes it (not started)."""
    management_port = free_port() if management else 0
    management_conf = (
        [f"management.tcp.port = {management_port}", "management.tcp.ip = 127.0.0.1"]
        if management
        else []
    )
    port, epmd_port = free_port(), free_port()
    tls_conf: list[str] = []
    tls_port = 0
    if tls_files:
        tls_port = free_port()
        tls_conf = [
            f"listeners.ssl.default = 127.0.0.1:{tls_port}",
            f"ssl_options.cacertfile = {tls_files[0]}",
            f"ssl_options.certfile = {tls_files[1]}",
            f"ssl_options.keyfile = {tls_files[2]}",
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
            "ssl_options.versions.1 = tlsv1.3",
            "ssl_options.versions.2 = tlsv1.2",
        ]
    (base / "rabbitmq.conf").write_text(
        "\n".join(
            [
                f"listeners.tcp.default = 127.0.0.1:{port}",
                f"load_definitions = {base / 'definitions.json'}",
                f"default_user = {ADMIN_USER}",
                f"default_pass = {admin_pw}",
                "disk_free_limit.absolute = 10MB",
                "vm_memory_high_watermark.relative = 0.3",
                "log.console = false",
                "log.file.level = warning",
                *management_conf,
                *tls_conf,
                *(f"deprecated_features.permit.{f} = false" for f in DENIED_FEATURES if image),
                *extra_conf,
                "",
            ]
        )
    )
    node = f"pimq-{secrets.token_hex(4)}@localhost"
    env = {
        **os.environ,
        "HOME": str(base),
        "ERL_EPMD_PORT": str(epmd_port),
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
    broker = Broker(
        node,
        port,
        env,
        base,
        students,
        admin_pw,
        worker_pw,
        tls_port=tls_port,
        ca=tls_files[0] if tls_files else None,
    )
    broker.management_port = management_port
    broker.container = f"pimq-rabbitmq-{secrets.token_hex(4)}" if image else ""
    broker.denied = DENIED_FEATURES if image else ()
    return broker


def _boot(broker: Broker, image: str) -> tuple[subprocess.Popen | None, subprocess.Popen | None]:
    """Start the broker (its epmd and server processes on the host, or its container)."""
    if image:
        _start_in_container(image, broker.container, broker.env, broker.base)
        broker.server_pid = _container_pid(broker.container)
        return None, None
    epmd = _start_epmd(int(broker.env["ERL_EPMD_PORT"]), broker.base / "epmd.out")
    with open(broker.base / "server.out", "wb") as out:
        server = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=broker.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    broker.server_pid = server.pid
    return epmd, server


def _gone(broker: Broker, server: subprocess.Popen | None) -> Callable[[], bool]:
    """Whether the broker's server (or container) is no more."""
    if broker.container:
        return lambda: _container_pid(broker.container) == 0
    assert server is not None
    return lambda: server.poll() is not None


def _stop(broker: Broker, epmd: subprocess.Popen | None, server: subprocess.Popen | None) -> None:
    """Stop the broker and keep its output in ``server.out``."""
    if server is not None and server.poll() is None:
        try:
            broker.ctl("stop", timeout=60)
        except Exception:
            pass
    if broker.container:
        with open(broker.base / "server.out", "wb") as log:
            subprocess.run(
                ["docker", "logs", broker.container], stdout=log, stderr=subprocess.STDOUT
            )
        subprocess.run(["docker", "rm", "-f", broker.container], capture_output=True)
    kill_group(server)
    kill_group(epmd)


def _container_pid(name: str) -> int:
    """The host pid of the container's first process (0: not running)."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True
    )
    return int(out.stdout) if out.returncode == 0 and out.stdout.strip().isdigit() else 0


if __name__ == "__main__":
    import tempfile

    release = sys.argv[1] if len(sys.argv) > 1 else ""
    base = Path(tempfile.mkdtemp(prefix="pimq-bench-")) / "rabbit"
    with private_broker(base, 3, container=release) as b:
        print(f"RabbitMQ {b.version} on 127.0.0.1:{b.port}; admin URL {b.url('s01')}")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
