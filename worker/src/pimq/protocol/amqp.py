"""Connection parameters and human-readable connection errors (no secrets)."""

from __future__ import annotations

import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions as px
from pika.spec import Basic

from pimq.config import StudentConfig
from pimq.errors import BrokerError

#: Bytes per ``recv`` on a broker socket: one full frame (pika's frame_max).
RECV_BYTES = 128 * 1024


def read_whole_frames() -> None:
    """Make pika read its socket a frame at a time instead of 4 KiB at a time.

    pika appends every read to its frame buffer (``bytes +=``), so a 128 KiB
    body frame read in 4 KiB pieces is copied ~16 times over before it is
    decoded: a worker receiving a 45 MB word count spent half its CPU there
    (``bench/RESULTS.md``). The read size is a class attribute of pika's
    transport (the same in pika 1.2 and newer); where a pika lacks it, nothing
    changes.
    """
    try:
        from pika.adapters.utils.io_services_utils import _AsyncTransportBase
    except ImportError:  # pragma: no cover - a pika without this transport
        return
    if getattr(_AsyncTransportBase, "_MAX_RECV_BYTES", RECV_BYTES) < RECV_BYTES:
        _AsyncTransportBase._MAX_RECV_BYTES = RECV_BYTES


def tls_context(ca: str) -> ssl.SSLContext:
    """A client TLS context that trusts only the room CA in file ``ca`` and checks
    the broker's host name (TLS 1.2 or newer)."""
    # PROTOCOL_TLS_CLIENT, not create_default_context(): that one also trusts
    # every CA of the system's store; a room trusts its own CA only.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_options(host: str, ca: str | None) -> pika.SSLOptions | None:
    """pika's TLS options for a connection to ``host`` verified against ``ca``
    (None: plaintext). The same call in pika 1.2, 1.3 and newer."""
    if not ca:
        return None
    try:
        ctx = tls_context(ca)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"cannot use the CA certificate {ca}: {_reason(exc)}") from None
    return pika.SSLOptions(ctx, server_hostname=host)


def parameters(
    host: str,
    port: int,
    vhost: str,
    user: str,
    password: str,
    heartbeat: int = 30,
    name: str = "pimq",
    ca: str | None = None,
) -> pika.ConnectionParameters:
    """Connection parameters; with ``ca``, TLS verified against that CA and ``host``."""
    read_whole_frames()
    return pika.ConnectionParameters(
        host=host,
        port=port,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password, erase_on_connect=False),
        heartbeat=heartbeat,
        connection_attempts=1,
        socket_timeout=10,
        stack_timeout=15,
        blocked_connection_timeout=300,
        client_properties={"connection_name": f"{name} on {socket.gethostname()}"},
        ssl_options=tls_options(host, ca),
    )


def student_parameters(
    cfg: StudentConfig, name: str = "pimq", heartbeat: int = 30
) -> pika.ConnectionParameters:
    """A student's connection: what ``pimq run``, the lab verbs and ``pimq.connect()`` use."""
    return parameters(
        cfg.host, cfg.port, cfg.vhost, cfg.user, cfg.password, heartbeat, name, cfg.ca
    )


def _reason(exc: BaseException) -> str:
    """An SSL error's reason in a few words (``certificate verify failed: ...``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or exc.reason or "certificate verify failed"
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or str(exc)).replace("_", " ").lower()
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _unwrap(exc: BaseException | None) -> BaseException | None:
    """The innermost cause of pika's wrapped connection errors."""
    for _ in range(10):
        inner = None
        if getattr(exc, "exceptions", None):
            inner = exc.exceptions[-1]  # AMQPConnectionWorkflowFailed
        elif isinstance(getattr(exc, "exception", None), BaseException):
            inner = exc.exception  # AMQPConnectorException
        elif (
            isinstance(exc, px.AMQPConnectionError)
            and exc.args
            and isinstance(exc.args[0], BaseException)
        ):
            inner = exc.args[0]
        if inner is None:
            return exc
        exc = inner
    return exc


def describe(
    exc: BaseException | None, host: str, port: int, vhost: str, user: str, tls: bool = False
) -> str:
    """One line saying why a connection failed or closed; never the password.

    ``tls``: whether the connection used TLS (says so when a handshake fails)."""
    where = f"{host}:{port}"
    exc = _unwrap(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"broker at {where} failed TLS verification against the room CA "
            f"({_reason(exc)}): is this the room's broker and its name?"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with the broker at {where} failed ({_reason(exc)})"
    if isinstance(exc, px.ProbableAuthenticationError):
        return f"broker at {where} refused user {user!r}: wrong user name or password"
    if isinstance(exc, px.ProbableAccessDeniedError):
        return f"user {user!r} has no access to vhost {vhost!r} on {where}"
    if isinstance(exc, px.ConnectionClosedByBroker):
        if exc.reply_code == 530:
            return f"user {user!r} has no access to vhost {vhost!r} on {where}"
        return f"broker at {where} closed the connection: {exc.reply_text}"
    if isinstance(exc, socket.gaierror):
        return f"cannot find the broker host {host!r}"
    if isinstance(exc, px.IncompatibleProtocolError) and not tls:
        return (
            f"broker at {where} did not answer in plain AMQP (a TLS port? the config names no ca)"
        )
    if isinstance(exc, (px.StreamLostError, px.IncompatibleProtocolError, px.ConnectionClosed)):
        return f"lost the connection to the broker at {where}"
    if isinstance(exc, OSError):
        detail = exc.strerror or type(exc).__name__
        return f"cannot reach the broker at {where} ({detail})"
    if isinstance(exc, px.AMQPConnectionError):
        return f"cannot reach the broker at {where} ({type(exc).__name__})"
    return f"connection to the broker at {where} failed: {exc or 'closed'}"


def blocking_connect(
    cfg: StudentConfig, name: str = "pimq", heartbeat: int = 30
) -> pika.BlockingConnection:
    try:
        return pika.BlockingConnection(student_parameters(cfg, name, heartbeat))
    except (px.AMQPError, OSError) as exc:
        raise BrokerError(describe(exc, *cfg.where(), tls=bool(cfg.ca))) from None


class Confirms:
    """Publisher-confirm bookkeeping for one asynchronous channel.

    Call :meth:`published` after every ``basic_publish`` (with a callback or
    None) and feed every ``Basic.Ack``/``Basic.Nack`` frame to :meth:`on_frame`;
    each callback gets True (confirmed) or False (refused) exactly once.
    """

    def __init__(self) -> None:
        self.seq = 0
        self.waiting: dict[int, Callable[[bool], None]] = {}
        self.order: deque[int] = deque()
        self.drained: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.seq = 0
        self.waiting.clear()
        self.order.clear()
        self.drained.clear()

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once no publish waits for its confirm (now, if none does)."""
        if self.waiting:
            self.drained.append(callback)
        else:
            callback()

    def published(self, callback: Callable[[bool], None] | None) -> None:
        self.seq += 1
        if callback is not None:
            self.waiting[self.seq] = callback
            self.order.append(self.seq)

    def __len__(self) -> int:
        return len(self.waiting)

    def on_frame(self, frame: Any) -> None:
        method = frame.method
        ok = isinstance(method, Basic.Ack)
        tag = method.delivery_tag
        order, waiting = self.order, self.waiting
        if method.multiple:
            while order and order[0] <= tag:
                callback = waiting.pop(order.popleft(), None)
                if callback is not None:
                    callback(ok)
        else:
            callback = waiting.pop(tag, None)
            if callback is not None:
                callback(ok)
            while order and order[0] not in waiting:
                order.popleft()
        if not waiting and self.drained:
            drained, self.drained = self.drained, []
            for callback in drained:
                callback()


class Acks:
    """Delivery acknowledgements of one consuming channel, coalesced.

    Call :meth:`received` for every delivery (in delivery order), then exactly
    one of :meth:`ack` / :meth:`nack` per delivery. Acks wait for :meth:`flush`
    (once per I/O round): the longest run of acked deliveries at the front of
    the channel's window goes out as one ``multiple`` ack, any other acked
    delivery as a single ack. Nacks go out at once, so a later ``multiple``
    ack never covers a delivery that was given back.
    """

    def __init__(self) -> None:
        self.window: deque[int] = deque()  # delivery tags not yet settled
        self.done: set[int] = set()  # acked, not yet sent
        self.sent: set[int] = set()  # settled ahead of the window's front

    def reset(self) -> None:
        self.window.clear()
        self.done.clear()
        self.sent.clear()

    def received(self, tag: int) -> None:
        self.window.append(tag)

    def ack(self, tag: int) -> None:
        self.done.add(tag)

    def nack(self, channel: Any, tag: int, requeue: bool = True) -> None:
        channel.basic_nack(tag, requeue=requeue)
        self.sent.add(tag)

    def __bool__(self) -> bool:
        return bool(self.done)

    @property
    def outstanding(self) -> int:
        """Deliveries received and neither acked nor given back yet."""
        return len(self.window) - len(self.done) - len(self.sent)

    def flush(self, channel: Any) -> None:
        window, done, sent = self.window, self.done, self.sent
        upto = 0
        while window and (window[0] in done or window[0] in sent):
            tag = window.popleft()
            if tag in done:
                done.discard(tag)
                upto = tag
            else:
                sent.discard(tag)
        if upto:
            channel.basic_ack(upto, multiple=True)
        for tag in sorted(done):
            channel.basic_ack(tag)
        sent |= done
        done.clear()
