"""``pimq.connect()`` and ``pimq env``: a student's own scripts reach their vhost.

Both read the student's config file (``~/.config/pimq/config.yaml``, 0600) and
go through :func:`pimq.protocol.amqp.student_parameters`, the one builder of a
student's connection parameters (so whatever it learns, e.g. TLS, scripts get
too). The password never has to be typed: not in a script, not in argv, not
in shell history.

``pimq.celery_config()`` is the same for Celery (the broker-survey hand-out):
the settings of a Celery app on the student's vhost, over TLS, with the
``rpc://`` result backend (replies over the same broker, nothing else to run).

``pimq env`` prints shell ``export`` lines without the password (host, port,
vhost, user, the config file); ``pimq env --password`` adds ``PIMQ_PASSWORD``
and ``AMQP_URL`` for programs that cannot import pimq, but only into a pipe or
a command substitution (``eval "$(pimq env --password)"``), never onto a
terminal, so the password is not left on the screen or in its scrollback.
"""

from __future__ import annotations

import os
import shlex
import ssl
from typing import Any
from urllib.parse import quote

import pika

from pimq.client import pika_compat
from pimq.config import StudentConfig, load_student_config, student_config_path
from pimq.errors import UsageError
from pimq.protocol import amqp

# the published tutorials' names of newer pika (pika_compat says which and why)
pika_compat.backport(pika)


def student(config: str | os.PathLike[str] | None = None, host: str | None = None) -> StudentConfig:
    return load_student_config(
        student_config_path(None if config is None else os.fspath(config)),
        host or os.environ.get("PIMQ_HOST") or None,
    )


def parameters(
    config: str | os.PathLike[str] | None = None,
    host: str | None = None,
    heartbeat: int = 30,
    name: str = "student script",
) -> pika.ConnectionParameters:
    """pika ``ConnectionParameters`` for the student's own vhost."""
    return amqp.student_parameters(student(config, host), name, heartbeat)


def connect(
    config: str | os.PathLike[str] | None = None,
    host: str | None = None,
    heartbeat: int = 30,
    name: str = "student script",
) -> pika.BlockingConnection:
    """A ``pika.BlockingConnection`` to the student's own vhost.

    ``config``: the config file (default ``$PIMQ_CONFIG`` or
    ``~/.config/pimq/config.yaml``); ``host``: another broker, e.g. a buddy's
    Pi (default ``$PIMQ_HOST`` or the config's); ``heartbeat``: seconds (0 =
    none). Raises :class:`pimq.errors.BrokerError` with a one-line reason
    when the broker cannot be reached or refuses the credentials.
    """
    return amqp.blocking_connect(student(config, host), name, heartbeat)


def celery_config(
    config: str | os.PathLike[str] | None = None, host: str | None = None
) -> dict[str, Any]:
    """Settings of a Celery app (``app.conf.update(pimq.celery_config())``) on
    the student's own vhost: the broker URL (with the password: it stays in the
    process, Celery's banner and logs mask it), TLS verified against the room
    CA when the config names one, results over the broker (``rpc://``)."""
    cfg = student(config, host)
    params = amqp.student_parameters(cfg, "celery")
    settings: dict[str, Any] = {
        "broker_url": url(params, with_password=True),
        "result_backend": "rpc://",
        "broker_connection_retry_on_startup": True,
    }
    if cfg.ca:
        settings["broker_use_ssl"] = {
            "ca_certs": cfg.ca,
            "cert_reqs": ssl.CERT_REQUIRED,
            "server_hostname": params.host,
        }
    return settings


def url(params: pika.ConnectionParameters, with_password: bool) -> str:
    creds: Any = params.credentials
    scheme = "amqps" if params.ssl_options is not None else "amqp"
    who = quote(creds.username, safe="")
    if with_password:
        who += ":" + quote(creds.password, safe="")
    vhost = quote(params.virtual_host, safe="")
    return f"{scheme}://{who}@{params.host}:{params.port}/{vhost}?heartbeat={params.heartbeat}"


def env_lines(cfg: StudentConfig, config_path: str, with_password: bool) -> list[str]:
    params = amqp.student_parameters(cfg, "student script")
    values = {
        "PIMQ_CONFIG": config_path,
        "PIMQ_HOST": params.host,
        "PIMQ_PORT": str(params.port),
        "PIMQ_VHOST": params.virtual_host,
        "PIMQ_USER": params.credentials.username,
    }
    if with_password:
        values["PIMQ_PASSWORD"] = params.credentials.password
        values["AMQP_URL"] = url(params, with_password=True)
    return [f"export {k}={shlex.quote(v)}" for k, v in values.items()]


def env(config: str | None, host: str | None, with_password: bool, isatty: bool) -> list[str]:
    if with_password and isatty:
        raise UsageError(
            "pimq env --password writes the password only into a pipe or a command "
            'substitution, never onto the screen: eval "$(pimq env --password)"'
        )
    path = student_config_path(config)
    cfg = load_student_config(path, host)
    return env_lines(cfg, str(path), with_password)
