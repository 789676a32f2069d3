"""The broker's management API, as the student (``pimq queue list``).

Students have the ``management`` tag, so the HTTP API lists every queue of
their own vhost (and of no other). The API's base URL comes from the config
file (:meth:`pimq.config.StudentConfig.management_base`); the password goes in
the Authorization header, never in a URL or argv.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pimq.config import StudentConfig
from pimq.protocol.amqp import tls_context

TIMEOUT = 10.0


class ManagementUnavailable(Exception):
    """The API could not answer (not reachable, not enabled, refused); the reason."""


@dataclass(frozen=True)
class QueueInfo:
    name: str
    messages: int
    consumers: int
    durable: bool
    exclusive: bool
    auto_delete: bool


def _get(cfg: StudentConfig, path: str) -> Any:
    url = cfg.management_base() + path
    # https with the room CA (the same trust as the AMQP connection)
    context = tls_context(cfg.ca) if cfg.ca and url.startswith("https:") else None
    token = base64.b64encode(f"{cfg.user}:{cfg.password}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise ManagementUnavailable(f"{cfg.management_base()} answered {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ManagementUnavailable(f"cannot reach {cfg.management_base()} ({reason})") from None


def list_queues(cfg: StudentConfig) -> list[QueueInfo]:
    """Every queue of the student's vhost, by name."""
    columns = "name,messages,consumers,durable,exclusive,auto_delete"
    rows = _get(cfg, f"/api/queues/{quote(cfg.vhost, safe='')}?columns={columns}")
    if not isinstance(rows, list):
        raise ManagementUnavailable("unexpected answer from the management API")
    queues = [
        QueueInfo(
            name=str(r.get("name", "")),
            messages=int(r.get("messages") or 0),
            consumers=int(r.get("consumers") or 0),
            durable=bool(r.get("durable")),
            exclusive=bool(r.get("exclusive")),
            auto_delete=bool(r.get("auto_delete")),
        )
        for r in rows
        if isinstance(r, dict)
    ]
    return sorted(queues, key=lambda q: q.name)
