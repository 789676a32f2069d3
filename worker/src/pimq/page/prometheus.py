"""A small reader of the Prometheus HTTP API (``/api/v1/query``, ``query_range``).

HTTPS verified against the room CA (the page's own TLS context: only that
CA, the host name checked), HTTP basic auth as the page's user; the standard
library only. Every failure (unreachable, refused login, a query error) is a
:class:`PrometheusError` with one line saying what, never the password.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

#: seconds one query may take (the page makes a few per refresh)
TIMEOUT = 3.0


class PrometheusError(Exception):
    """A query got no answer."""


class Prometheus:
    def __init__(
        self,
        url: str,
        user: str = "",
        password: str = "",
        ca: str | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.auth = ""
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.auth = "Basic " + token
        self.context: ssl.SSLContext | None = None
        if self.url.startswith("https://"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if ca:
                ctx.load_verify_locations(cafile=ca)
            else:
                ctx.load_default_certs()
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self.context = ctx

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url)
        if self.auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                doc = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise PrometheusError(
                    f"Prometheus refused the page's login (HTTP {exc.code})"
                ) from None
            try:
                doc = json.loads(exc.read().decode("utf-8"))
            except (ValueError, OSError):
                raise PrometheusError(f"Prometheus answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise PrometheusError(f"Prometheus at {self.url} not reachable: {reason}") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            error = doc.get("error") if isinstance(doc, dict) else None
            raise PrometheusError(f"Prometheus query failed: {error or 'no answer'}")
        data = doc.get("data") or {}
        result = data.get("result")
        if not isinstance(result, list):
            raise PrometheusError("Prometheus answered no result list")
        return result

    def query(self, expr: str) -> list[Mapping[str, Any]]:
        """An instant query's ``data.result``."""
        return self._get("/api/v1/query", {"query": expr})

    def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[Mapping[str, Any]]:
        """A range query's ``data.result``."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        return self._get("/api/v1/query_range", params)

    def answers(self, queries: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
        """Every query's result by key (None where it failed) and the first
        failure's words (None: every query answered). After one connection
        failure the rest are not tried (the page must not wait 3 s each)."""
        out: dict[str, Any] = {}
        first: str | None = None
        for key, expr in queries.items():
            if first is not None and "not reachable" in first:
                out[key] = None
                continue
            try:
                out[key] = self.query(expr)
            except PrometheusError as exc:
                out[key] = None
                first = first or str(exc)
        return out, first
