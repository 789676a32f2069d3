"""Security: tenants fenced from each other, guest gone, the worker user fenced to
``pimq.`` resources, what the management API shows a student, the worker's sandbox.

The tenant matrix tries, for every ordered pair of students (A, B), to open B's
vhost over AMQP as A, and to configure (declare a queue), write (publish) and read
(get from ``pimq.tasks``) in it through the management API as A; each must be
refused, while the same four on A's own vhost must work (else the matrix could not
fail).

The sandbox check goes beyond reading the unit's properties: every sandbox setting of
the installed unit's [Service] section (``systemctl cat pimq-worker``: User, Protect*,
StateDirectory, SystemCallFilter, ...) is copied onto a transient unit
(``systemd-run --wait --pipe``) that tries to write in a few places. Only the state
directory (and the unit's private /tmp) may take a write. Entering the running
worker's own namespace is not possible here (``nsenter -t MAINPID -m`` is refused
inside the containers), so this probes an identical sandbox, not the worker process.
"""

from __future__ import annotations

import re

import figures
import pika
import pytest
import requests
from support import jobs, nodes

from pimq.client.record import RECORD_VHOST

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SANDBOX = (
    "User",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "ReadWritePaths",
    "StateDirectory",
    "NoNewPrivileges",
)
# places the worker must not write to
FORBIDDEN = (
    "/etc/pimq", "/opt/pimq", "/usr/local/bin", "/var/log", "/home", "/root", "/var/lib/prometheus",
)  # fmt: skip
# the node exporter's textfile folder (roles/pimq_monitor): the worker's metrics go there
METRICS = "/var/lib/pimq-metrics"
NOT_SANDBOX = ("Type", "ExecStart", "Restart", "RestartSec", "Environment")
PROBE = (
    'for p in "$@"; do if ( : > "$p/.chaos-probe" ) 2>/dev/null; '
    'then rm -f "$p/.chaos-probe"; echo "$p yes"; else echo "$p no"; fi; done'
)


def sandbox_settings(node: str) -> list[str]:
    unit = nodes.on_node(node, ["systemctl", "cat", "pimq-worker.service"]).stdout
    settings, section = [], None
    for line in unit.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif (
            section == "[Service]"
            and "=" in line
            and not line.startswith("#")
            and line.split("=", 1)[0] not in NOT_SANDBOX
        ):
            settings.append(line)
    return settings


def probe_writes(node: str, places: list[str]) -> dict[str, bool]:
    props = [a for s in sandbox_settings(node) for a in ("-p", s)]
    # systemd expands $ in command lines: $$ is a literal $
    out = nodes.on_node(
        node,
        ["systemd-run", "--wait", "--pipe", "--collect", "-q", *props, "/bin/sh", "-c",
         PROBE.replace("$", "$$"), "probe", *places],
    ).stdout  # fmt: skip
    return {line.rsplit(" ", 1)[0]: line.endswith(" yes") for line in out.splitlines()}


PROBE_QUEUE = "chaos.tenant-probe"
OPS = ("configure", "write", "read")


def amqp(room: nodes.Room, node: str, user: str, password: str, vhost: str = "/"):
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host=room.ips[node],
            port=nodes.AMQPS_PORT,
            ssl_options=nodes.amqps_options(room.ips[node]),
            virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password),
            connection_attempts=1,
            socket_timeout=10,
        )
    )


def opens(room: nodes.Room, user: str, password: str, vhost: str) -> bool:
    try:
        amqp(room, room.head, user, password, vhost).close()
        return True
    except pika.exceptions.AMQPConnectionError:
        return False


def try_ops(api: str, auth: tuple[str, str], vhost: str, queue: str) -> dict[str, int]:
    """HTTP status of configure / write / read in ``vhost`` through the management API
    (read takes nothing away: the message is requeued)."""
    configure = requests.put(
        f"{api}/queues/{vhost}/{PROBE_QUEUE}",
        json={"durable": False},
        auth=auth,
        timeout=15,
        verify=str(nodes.room_ca()),
    )
    write = requests.post(
        f"{api}/exchanges/{vhost}/amq.default/publish",
        json={
            "properties": {},
            "routing_key": queue,
            "payload": "probe",
            "payload_encoding": "string",
        },
        auth=auth,
        timeout=15,
        verify=str(nodes.room_ca()),
    )
    read = requests.post(
        f"{api}/queues/{vhost}/{queue}/get",
        json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
        auth=auth,
        timeout=15,
        verify=str(nodes.room_ca()),
    )
    if write.ok and not write.json().get("routed"):
        write.status_code = 0  # accepted but not delivered: not a working write
    if read.ok and not read.json():
        read.status_code = 0  # allowed but nothing read back
    return {"configure": configure.status_code, "write": write.status_code,
            "read": read.status_code}  # fmt: skip


def test_tenant_matrix(room: nodes.Room, converged, creds) -> None:
    api = nodes.api_url(room)
    problems: list[str] = []
    for a in jobs.STUDENTS:
        auth = (a, creds.students[a])
        own = try_ops(api, auth, a, PROBE_QUEUE)
        own_open = opens(room, a, creds.students[a], a)
        requests.delete(
            f"{api}/queues/{a}/{PROBE_QUEUE}", auth=auth, timeout=15, verify=str(nodes.room_ca())
        )
        if not own_open or not all(200 <= own[op] < 300 for op in OPS):
            problems.append(f"{a} cannot use their own vhost: open={own_open} {own}")
        others = [b for b in jobs.STUDENTS if b != a]
        refused = dict.fromkeys(("open", *OPS), 0)
        for b in others:
            if opens(room, a, creds.students[a], b):
                problems.append(f"{a} opened vhost {b} over AMQP")
            else:
                refused["open"] += 1
            for op, status in try_ops(api, auth, b, "pimq.tasks").items():
                if status in (401, 403):
                    refused[op] += 1
                else:
                    problems.append(f"{a}: {op} in vhost {b} answered {status}")
        n = len(others)
        figures.add(
            "Tenant matrix: each student against every other student's vhost",
            a,
            **{
                "other vhosts": n,
                "AMQP open refused": f"{refused['open']}/{n}",
                **{f"{op} refused (API)": f"{refused[op]}/{n}" for op in OPS},
                "own vhost: open, configure, write, read": "ok"
                if own_open and all(200 <= own[op] < 300 for op in OPS)
                else f"open={own_open} {own}",
            },
        )
    assert not problems, "\n".join(problems)


def test_guest_is_gone_from_every_node(room: nodes.Room, converged) -> None:
    problems = []
    for node in room.nodes:
        remote = opens_as_guest(room, node)
        # from the node itself, where RabbitMQ would let guest in if it existed
        local = nodes.on_node(node, ["python3", "-"], input=GUEST_PROBE).stdout.strip()
        listed = "guest" in {u["name"] for u in nodes.broker_definitions(node)["users"]}
        figures.add(
            "guest on every broker",
            node,
            **{
                "login from the control machine": "refused" if not remote else "IN",
                "login on the node (localhost)": local.lower(),
                "user exists": "yes" if listed else "no",
            },
        )
        if remote or local != "REFUSED" or listed:
            problems.append(f"{node}: guest remote={remote} local={local} listed={listed}")
    assert not problems, "\n".join(problems)


GUEST_PROBE = (
    "import pika\ntry:\n pika.BlockingConnection(pika.ConnectionParameters('localhost',"
    "credentials=pika.PlainCredentials('guest','guest'),connection_attempts=1))\n"
    " print('IN')\nexcept pika.exceptions.AMQPConnectionError:\n print('REFUSED')\n"
)


def opens_as_guest(room: nodes.Room, node: str) -> bool:
    try:
        amqp(room, node, "guest", "guest").close()
        return True
    except pika.exceptions.AMQPConnectionError:
        return False


def test_worker_user_only_reaches_pimq_resources(room: nodes.Room, converged, creds) -> None:
    """On every student vhost of the head: pimq-worker reaches pimq.tasks, but can
    neither read a student's own queue nor declare a queue outside ``pimq.``."""
    counts = {"pimq.tasks reached": 0, "student's queue read refused": 0,
              "non-pimq queue declare refused": 0}  # fmt: skip
    problems = []
    for name in jobs.STUDENTS:
        owner = amqp(room, room.head, name, creds.students[name], name)
        och = owner.channel()
        och.queue_declare(queue="homework", durable=False)
        och.basic_publish(exchange="", routing_key="homework", body=b"secret homework")
        try:
            worker = amqp(room, room.head, "pimq-worker", creds.worker, name)
            try:
                worker.channel().queue_declare(queue="pimq.tasks", durable=True, passive=True)
                counts["pimq.tasks reached"] += 1
                for what, attempt in (
                    ("student's queue read refused", lambda ch: ch.basic_get(queue="homework")),
                    ("non-pimq queue declare refused", lambda ch: ch.queue_declare("not-pimq")),
                ):
                    try:
                        attempt(worker.channel())
                        problems.append(f"{name}: pimq-worker was not refused: {what}")
                    except pika.exceptions.ChannelClosedByBroker as exc:
                        if exc.reply_code == 403:
                            counts[what] += 1
                        else:
                            problems.append(f"{name}: {what}: {exc}")
            finally:
                if worker.is_open:
                    worker.close()
        finally:
            och.queue_delete(queue="homework")
            owner.close()
    n = len(jobs.STUDENTS)
    figures.add(
        "The pimq-worker user on every student vhost (head)",
        f"{n} vhosts",
        **{what: f"{count}/{n}" for what, count in counts.items()},
    )
    assert not problems, "\n".join(problems)


def test_management_api_shows_a_student_only_their_vhost(
    room: nodes.Room, converged, creds
) -> None:
    url = nodes.api_url(room)
    problems = []
    for name in jobs.STUDENTS:
        auth = (name, creds.students[name])
        vhosts = requests.get(f"{url}/vhosts", auth=auth, timeout=15, verify=str(nodes.room_ca()))
        queues = requests.get(f"{url}/queues", auth=auth, timeout=15, verify=str(nodes.room_ca()))
        seen_v = {v["name"] for v in vhosts.json()} if vhosts.ok else set()
        seen_q = {q["vhost"] for q in queues.json()} if queues.ok else set()
        other = requests.get(
            f"{url}/queues/{'alice' if name != 'alice' else 'bob'}",
            auth=auth,
            timeout=15,
            verify=str(nodes.room_ca()),
        )
        figures.add(
            "Management API as each student",
            name,
            **{
                "/api/vhosts": f"{vhosts.status_code} {sorted(seen_v)}",
                "vhosts of /api/queues": sorted(seen_q),
                "another student's /api/queues/VHOST": other.status_code,
            },
        )
        # and the teacher's record (the head broker's pimq-teacher), where a
        # student may only publish a job's summary: listed, not readable
        # (tests/classroom/test_page.py)
        if not seen_v <= {name, RECORD_VHOST} or not seen_q <= {name, RECORD_VHOST} or other.ok:
            problems.append(f"{name}: vhosts {seen_v}, queues in {seen_q}, other {other}")
    assert not problems, "\n".join(problems)


def test_worker_sandbox(room: nodes.Room, converged) -> None:
    problems = []
    for node in room.workers:
        jobs.wait_worker_active(node)
        props = jobs.worker_props(node, *SANDBOX)
        out = nodes.on_node(
            node, ["systemd-analyze", "security", "pimq-worker.service", "--no-pager"]
        ).stdout
        found = re.search(r"Overall exposure level for pimq-worker.service: ([0-9.]+) (\S+)", out)
        exposure = f"{found.group(1)} {found.group(2)}" if found else "?"
        state = "/var/lib/" + props["StateDirectory"].split()[0] if props["StateDirectory"] else ""
        places = [*FORBIDDEN, state, "/tmp", METRICS]
        result = probe_writes(node, places)
        writable = [p for p in places if result.get(p)]
        if set(result) != set(places) or not result.get(state) or not result.get(METRICS):
            problems.append(f"{node}: the probe did not run as expected: {result}")
        figures.add(
            "Worker sandbox (pimq-worker.service)",
            node,
            **{
                "systemd-analyze exposure": exposure,
                "ProtectSystem": props["ProtectSystem"],
                "ReadWritePaths": props["ReadWritePaths"] or "-",
                "StateDirectory": props["StateDirectory"] or "-",
                "writable (probed in an identical sandbox)": ", ".join(writable) or "none",
            },
        )
        if not found:
            problems.append(f"{node}: no exposure figure in:\n{out}")
        allowed = {state, "/tmp", METRICS}
        if set(writable) - allowed:
            problems.append(f"{node}: worker can write to {sorted(set(writable) - allowed)}")
    assert not problems, "\n".join(problems)
