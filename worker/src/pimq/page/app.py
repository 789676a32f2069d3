"""The teacher's page: a Flask app, served by Debian's gunicorn (one process).

``gunicorn 'pimq.page.app:create_app()'`` on the head (``pimq-page.service``,
``roles/pimq_page``). Its settings are ``/etc/pimq/page.yaml`` (no secret
in it: ``$PIMQ_PAGE_CONFIG`` to use another); its secrets are files of its
``secrets_dir`` (or systemd's ``$CREDENTIALS_DIRECTORY``): ``password``, the
page's own password for Prometheus and the broker, and ``logins``, the
teachers' password hashes; never on the command line or in a file others
can read.

Only the admin and the inventory's teachers log in (a form; the session is a
signed cookie, Secure, HttpOnly, SameSite=Strict, its key made at start, so
a restart logs everyone out). Every other page answers a redirect to the
login (``/``) or 401 (``/api/figures``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session

from pimq.page import figures
from pimq.page.logins import check_login
from pimq.page.prometheus import Prometheus
from pimq.page.records import KEEP, RecordConsumer, RecordStore

PAGE_CONFIG = "/etc/pimq/page.yaml"
LOG = logging.getLogger("pimq.page")


@dataclass(frozen=True)
class Settings:
    prometheus_url: str = ""
    prometheus_user: str = ""
    ca: str | None = None
    head: str = ""
    pis: tuple[str, ...] = ()
    broker_host: str = ""
    broker_port: int = 5671
    broker_user: str = ""
    record_vhost: str = "pimq-teacher"
    record_exchange: str = "pimq.record"
    keep_records: int = KEEP
    refresh_seconds: int = 10
    state_dir: str = ""
    #: where ``password`` and ``logins`` are (default: systemd's credentials)
    secrets_dir: str = ""
    password: str = field(default="", repr=False)
    logins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)


def load_settings(
    path: str | os.PathLike[str] | None = None, credentials: str | None = None
) -> Settings:
    """The settings file and the credentials directory, checked."""
    p = Path(path or os.environ.get("PIMQ_PAGE_CONFIG") or PAGE_CONFIG)
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p} must be a mapping")
    known = set(Settings.__dataclass_fields__) - {"password", "logins"}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ValueError(f"{p}: unknown key(s): {', '.join(unknown)}")
    creds = Path(
        credentials
        or data.get("secrets_dir")
        or os.environ.get("CREDENTIALS_DIRECTORY")
        or "/nonexistent"
    )
    password = ""
    logins: dict[str, Any] = {}
    if (creds / "password").exists():
        password = (creds / "password").read_text(encoding="utf-8").strip()
    if (creds / "logins").exists():
        logins = json.loads((creds / "logins").read_text(encoding="utf-8")) or {}
    data["pis"] = tuple(str(x) for x in data.get("pis") or ())
    if not data.get("state_dir"):
        data["state_dir"] = (os.environ.get("STATE_DIRECTORY") or "").split(":")[0]
    return Settings(**data, password=password, logins=logins)


class Figures:
    """The page's figures, asked of Prometheus at most once per half refresh."""

    def __init__(self, settings: Settings, store: RecordStore) -> None:
        self.settings = settings
        self.store = store
        self.prom = (
            Prometheus(
                settings.prometheus_url,
                settings.prometheus_user,
                settings.password,
                settings.ca,
            )
            if settings.prometheus_url
            else None
        )
        self.lock = threading.Lock()
        self.cached: tuple[float, dict[str, Any]] | None = None

    def gather(self) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            if self.cached and now - self.cached[0] < self.settings.refresh_seconds / 2:
                doc = dict(self.cached[1])
            else:
                doc = self._ask(now)
                self.cached = (now, doc)
        doc["jobs"] = figures.job_rows(self.store.newest(20), now)
        return doc

    def _ask(self, now: float) -> dict[str, Any]:
        s = self.settings
        if self.prom is None:
            pi_answers: dict[str, Any] = {}
            student_answers: dict[str, Any] = {}
            error: str | None = "no Prometheus configured"
            use = None
        else:
            pi_answers, error = self.prom.answers(figures.PI_QUERIES)
            if error and "not reachable" in error:
                student_answers, use = {}, None
            else:
                student_answers, error2 = self.prom.answers(figures.student_queries(s.head))
                error = error or error2
                try:
                    use = figures.series(
                        self.prom.query_range(figures.FLEET_USE, now - 3600, now, 15)
                    )
                except Exception as exc:
                    use = None
                    error = error or str(exc)
        return {
            "time": now,
            "pis": figures.pi_rows(s.pis, pi_answers),
            "students": figures.student_rows(student_answers),
            "use": use,
            "prometheus_error": error,
        }


def create_app(
    settings: Settings | None = None, start_consumer: bool = True, connect: Any = None
) -> Flask:
    """The app; ``settings`` default to :func:`load_settings` (the service's)."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_NAME="pimq_page",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
    )
    keep = settings.keep_records
    path = Path(settings.state_dir) / "records.json" if settings.state_dir else None
    store = RecordStore(path, keep)
    consumer: RecordConsumer | None = None
    if start_consumer and settings.broker_host:
        consumer = RecordConsumer(
            store, connect or _broker_connect(settings), settings.record_exchange
        )
        consumer.start()
    page = Figures(settings, store)
    app.extensions["pimq_page"] = {"settings": settings, "store": store, "consumer": consumer}

    def logged_in() -> str | None:
        user = session.get("user")
        return user if isinstance(user, str) and user in settings.logins else None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Strict-Transport-Security"] = "max-age=31536000"
        return resp

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        status = 200
        if request.method == "POST":
            name = request.form.get("name", "")
            password = request.form.get("password", "")
            if check_login(settings.logins, name, password):
                session.clear()
                session["user"] = name
                session.permanent = True
                LOG.info("%s logged in", name)
                return redirect("/", code=303)
            LOG.warning("refused a login as %r", name[:64])
            error, status = "Wrong name or password.", 401
        return render_template("login.html", error=error), status

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect("/login", code=303)

    @app.get("/")
    def index() -> Any:
        user = logged_in()
        if user is None:
            return redirect("/login", code=303)
        doc = page.gather()
        return render_template(
            "index.html",
            user=user,
            doc=doc,
            plot=figures.svg_plot(doc["use"], doc["time"], width=1200, height=200),
            refresh=settings.refresh_seconds,
            ago=figures.ago,
            record_ok=consumer is None or consumer.connected,
            record_error=consumer.last_error if consumer else None,
            now=time.strftime("%H:%M:%S", time.localtime(doc["time"])),
        )

    @app.get("/api/figures")
    def api_figures() -> Any:
        if logged_in() is None:
            abort(401)
        return jsonify(page.gather())

    return app


def _broker_connect(settings: Settings) -> Any:
    def connect() -> Any:
        import pika

        from pimq.protocol import amqp

        params = amqp.parameters(
            settings.broker_host,
            settings.broker_port,
            settings.record_vhost,
            settings.broker_user,
            settings.password,
            heartbeat=30,
            name="pimq-page",
            ca=settings.ca,
        )
        return pika.BlockingConnection(params)

    return connect
