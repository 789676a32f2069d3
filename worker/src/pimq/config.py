"""Reading and validating the worker's and the students' config files."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pimq.errors import ConfigError

WORKER_CONFIG = "/etc/pimq/worker.yaml"
STUDENT_CONFIG = "~/.config/pimq/config.yaml"
#: The broker's port without TLS (an old room's config, or loopback only).
AMQP_PORT = 5672
#: The broker's port with TLS: the default when a config names a ``ca``.
AMQPS_PORT = 5671
#: The management API's ports: plain HTTP (loopback only in a TLS room) and HTTPS.
MANAGEMENT_PORT = 15672
MANAGEMENT_TLS_PORT = 15671


@dataclass(frozen=True)
class WorkerConfig:
    host: str
    user: str
    password: str = field(repr=False)
    vhosts: tuple[str, ...]
    port: int = AMQP_PORT
    processes: int = 0  # 0 = one per CPU core
    heartbeat: int = 30
    prefetch: int = 0  # per vhost; 0 = automatic (see Worker.prefetch_for)
    ca: str | None = None  # the room CA's certificate: TLS, verified; None = plaintext
    #: the per-student content-addressed store (student modules)
    store: str = "/var/lib/pimq/store"
    #: pimq-sandbox.socket: where student modules' run() is sent
    sandbox_socket: str = "/run/pimq-sandbox/sandbox.sock"
    #: the room's per-shard wall-clock limit in seconds (students may ask for less)
    shard_timeout: int = 600
    #: the broker's consumer_timeout in seconds (0: none): a delivery not acked
    #: within it closes the channel, so no shard may be held that long
    consumer_timeout: int = 1800
    #: this Pi's name in results and routes (``pimq run --pis``); "" = its host name
    name: str = ""
    #: room for each student's datasets (``pimq data put``) on this Pi, in MiB
    dataset_quota_mb: int = 1024
    #: the worker's metrics as a node-exporter textfile (``pimq.worker.metrics``);
    #: "" = none
    metrics: str = ""

    def dataset_quota(self) -> int:
        return self.dataset_quota_mb * 2**20

    def pool_size(self) -> int:
        return self.processes or os.cpu_count() or 1


@dataclass(frozen=True)
class StudentConfig:
    vhost: str
    user: str
    password: str = field(repr=False)
    host: str = "localhost"
    port: int = AMQP_PORT
    ca: str | None = None  # the room CA's certificate: TLS, verified; None = plaintext
    #: the broker's management API (``pimq queue list``): ``management_url``
    #: when the config gives one, else https (with ``ca``) or http on
    #: ``host``:``management_port``
    management_port: int = 0
    management_url: str = ""

    def management_base(self) -> str:
        if self.management_url:
            return self.management_url.rstrip("/")
        scheme, default = ("https", MANAGEMENT_TLS_PORT) if self.ca else ("http", MANAGEMENT_PORT)
        return f"{scheme}://{self.host}:{self.management_port or default}"

    def where(self) -> tuple[str, int, str, str]:
        """(host, port, vhost, user): what error messages name."""
        return self.host, self.port, self.vhost, self.user


def _load_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of keys to values")
    return data


def _check_keys(path: Path, data: dict[str, Any], required: set[str], optional: set[str]) -> None:
    unknown = sorted(str(k) for k in data if k not in required | optional)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s): {', '.join(unknown)}")
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"config file {path}: missing key(s): {', '.join(missing)}")


def _str(path: Path, data: dict[str, Any], key: str) -> str:
    value = data[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "password":
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config file {path}: {key} must be a non-empty string")
    return value


def _int(path: Path, data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"config file {path}: {key} must be an integer from {low} to {high}")
    return value


def _ca(path: Path, data: dict[str, Any]) -> str | None:
    """The ``ca`` key: the path of a readable CA certificate file, or None if absent.

    With it, connections use TLS and verify the broker's certificate against
    this CA and its name against the host connected to; without it they are
    plaintext, as in rooms provisioned before TLS."""
    if "ca" not in data:
        return None
    value = _str(path, data, "ca")
    ca = Path(value).expanduser()
    if not ca.is_absolute():
        ca = path.parent / ca
    try:
        with ca.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"config file {path}: ca {value} cannot be read ({exc.strerror or exc})"
        ) from None
    return str(ca)


def _port(path: Path, data: dict[str, Any], ca: str | None) -> int:
    return _int(path, data, "port", AMQPS_PORT if ca else AMQP_PORT, 1, 65535)


def _metrics(path: Path, data: dict[str, Any]) -> str:
    """The ``metrics`` key: an absolute path ending in .prom (the node exporter's
    textfile collector reads only those), or "" (absent, null or empty: none)."""
    value = data.get("metrics") or ""
    if not isinstance(value, str) or (
        value and not (value.startswith("/") and value.endswith(".prom"))
    ):
        raise ConfigError(f"config file {path}: metrics must be an absolute path ending in .prom")
    return value


def load_worker_config(path: str | os.PathLike[str] = WORKER_CONFIG) -> WorkerConfig:
    p = Path(path)
    data = _load_mapping(p)
    _check_keys(
        p,
        data,
        {"host", "user", "password", "vhosts"},
        {
            "port",
            "processes",
            "heartbeat",
            "prefetch",
            "ca",
            "store",
            "sandbox_socket",
            "shard_timeout",
            "consumer_timeout",
            "name",
            "dataset_quota_mb",
            "metrics",
        },
    )
    ca = _ca(p, data)
    vhosts = data["vhosts"]
    if vhosts is None:
        vhosts = []
    if not isinstance(vhosts, list) or not all(isinstance(v, str) and v for v in vhosts):
        raise ConfigError(f"config file {p}: vhosts must be a list of vhost names")
    if len(set(vhosts)) != len(vhosts):
        raise ConfigError(f"config file {p}: vhosts lists a vhost twice")
    return WorkerConfig(
        host=_str(p, data, "host"),
        user=_str(p, data, "user"),
        password=_str(p, data, "password"),
        vhosts=tuple(vhosts),
        port=_port(p, data, ca),
        processes=_int(p, data, "processes", 0, 0, 1024),
        heartbeat=_int(p, data, "heartbeat", 30, 0, 3600),
        prefetch=_int(p, data, "prefetch", 0, 0, 10000),
        ca=ca,
        store=_str(p, data, "store") if "store" in data else WorkerConfig.store,
        sandbox_socket=(
            _str(p, data, "sandbox_socket")
            if "sandbox_socket" in data
            else WorkerConfig.sandbox_socket
        ),
        shard_timeout=_int(p, data, "shard_timeout", 600, 1, 7 * 24 * 3600),
        consumer_timeout=_int(p, data, "consumer_timeout", 1800, 0, 7 * 24 * 3600),
        name=_str(p, data, "name") if "name" in data else "",
        dataset_quota_mb=_int(p, data, "dataset_quota_mb", 1024, 0, 2**24),
        metrics=_metrics(p, data),
    )


def student_config_path(cli_path: str | None = None) -> Path:
    chosen = cli_path or os.environ.get("PIMQ_CONFIG") or STUDENT_CONFIG
    return Path(chosen).expanduser()


def load_student_config(path: Path, host: str | None = None) -> StudentConfig:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"config file {path} is accessible by others (mode {stat.S_IMODE(mode):04o}); "
            f"it holds your password: run chmod 600 {path}"
        )
    data = _load_mapping(path)
    _check_keys(
        path,
        data,
        {"vhost", "user", "password"},
        {"host", "port", "ca", "management_port", "management_url"},
    )
    ca = _ca(path, data)
    management_url = _str(path, data, "management_url") if "management_url" in data else ""
    if management_url and not management_url.startswith(("http://", "https://")):
        raise ConfigError(f"config file {path}: management_url must be an http(s) URL")
    return StudentConfig(
        vhost=_str(path, data, "vhost"),
        user=_str(path, data, "user"),
        password=_str(path, data, "password"),
        host=host or (_str(path, data, "host") if "host" in data else "localhost"),
        port=_port(path, data, ca),
        ca=ca,
        management_port=_int(path, data, "management_port", 0, 0, 65535),
        # a buddy's broker (--host) has its own management API, or none
        management_url="" if host else management_url,
    )
