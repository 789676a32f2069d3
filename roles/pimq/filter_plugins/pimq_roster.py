"""Roster filters shared by every pimq_* role.

The roster (``pimq_students``) is a list of mappings
``{name, full_name?, ssh_key?, state?}``. These filters validate it (every
problem, all at once, so an admin fixes the file in one go) and normalise it
for the roles.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Debian's useradd accepts more, but a classroom name must also be a safe
# RabbitMQ vhost/user name, a directory name and a YAML scalar: keep it tame.
NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ALLOWED_KEYS = frozenset({"name", "full_name", "ssh_key", "state"})
STATES = ("present", "absent")
SSH_KEY_RE = re.compile(
    r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|"
    r"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)\s+[A-Za-z0-9+/=]+(\s+.*)?$"
)


def roster_errors(
    roster: Any, reserved: Iterable[Any] = (), allow_empty: bool = False
) -> list[str]:
    """Return one human-readable line per problem in ``roster`` (empty: valid)."""
    if roster is None:
        roster = []
    if not isinstance(roster, list):
        return [
            "pimq_students must be a list of {name, full_name, ssh_key, state} "
            f"mappings, got {type(roster).__name__}"
        ]
    errors: list[str] = []
    if not roster and not allow_empty:
        errors.append(
            "pimq_students is empty: no student would be provisioned "
            "(set pimq_allow_empty_roster: true if that is what you want)"
        )
    reserved = {str(r) for r in (reserved or ())}
    seen: dict[str, int] = {}
    for index, entry in enumerate(roster):
        where = f"entry #{index + 1}"
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be a mapping with at least 'name', got {entry!r}")
            continue
        name = entry.get("name")
        if name is not None:
            where = f"entry #{index + 1} ({name})"
        unknown = sorted(str(k) for k in entry if k not in ALLOWED_KEYS)
        if unknown:
            errors.append(
                f"{where}: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(ALLOWED_KEYS))}"
            )
        if name is None or name == "":
            errors.append(f"{where}: missing 'name'")
        elif not isinstance(name, str) or not NAME_RE.match(name):
            errors.append(
                f"{where}: name {name!r} is not a valid Linux user name "
                "(lower-case letter or _, then up to 31 of a-z 0-9 _ -)"
            )
        elif name in reserved:
            errors.append(f"{where}: name {name!r} is reserved (system or pimq account)")
        elif name in seen:
            errors.append(f"{where}: duplicate name {name!r} (first at entry #{seen[name]})")
        if isinstance(name, str) and name not in seen:
            seen[name] = index + 1
        state = entry.get("state", "present")
        if state not in STATES:
            errors.append(f"{where}: state {state!r} must be one of {', '.join(STATES)}")
        full_name = entry.get("full_name")
        if full_name is not None and (
            not isinstance(full_name, str) or any(c in full_name for c in ":,\n\r")
        ):
            errors.append(f"{where}: full_name must be text without ':', ',' or line breaks")
        ssh_key = entry.get("ssh_key")
        if ssh_key is not None and (
            not isinstance(ssh_key, str)
            or "\n" in ssh_key.strip()
            or not SSH_KEY_RE.match(ssh_key.strip())
        ):
            errors.append(f"{where}: ssh_key is not one OpenSSH public key line")
    return errors


def roster_from_csv(text: Any) -> list[dict[str, str]]:
    """Roster entries from CSV text: a header row (``name`` required), then one
    student per row; empty cells are left out, ``#`` lines skipped."""
    lines = [
        line
        for line in str(text).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    entries = []
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        entry = {}
        for key, value in row.items():
            if key is None:  # more cells than header columns
                entry["(extra cells)"] = value
            elif value is not None and value.strip() != "":
                entry[key.strip()] = value.strip()
        entries.append(entry)
    return entries


def roster(value: Iterable[Mapping[str, Any]] | None, state: str | None = None) -> list[dict]:
    """Normalise the roster; optionally keep only one ``state``."""
    out = []
    for entry in value or []:
        item = {
            "name": entry["name"],
            "full_name": entry.get("full_name") or entry["name"],
            "ssh_key": (entry.get("ssh_key") or "").strip(),
            "state": entry.get("state", "present"),
        }
        if state is None or item["state"] == state:
            out.append(item)
    return out


def roster_accounts(value: Any) -> list[dict[str, str | None]]:
    """``pimq_account_owners`` ``accounts`` for every roster entry with a valid name,
    even in a roster with other errors (so one preflight message lists them all):
    ``name`` and ``comment`` (the full name pimq sets as GECOS, as :func:`roster`
    normalises it; None for a student being removed: not checked)."""
    out: list[dict[str, str | None]] = []
    seen: set[str] = set()
    for entry in value if isinstance(value, list) else []:
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name) or name in seen:
            continue
        seen.add(name)
        full_name = entry.get("full_name")
        comment = full_name if isinstance(full_name, str) and full_name else name
        out.append({"name": name, "comment": None if entry.get("state") == "absent" else comment})
    return out


def owner_errors(results: Mapping[str, Any], inventory: str = "inventory/<room>") -> list[str]:
    """One line per roster name a node has that pimq did not make, from the
    ``pimq_account_owners`` results by host (``{host: result}``); a host that
    could not be asked says why (an unreachable host: its SSH error, e.g. a
    changed host key: what to do, with `inventory`, the room's folder)."""
    errors: list[str] = []
    for host in sorted(results):
        result = results[host] or {}
        if not isinstance(result, Mapping):
            continue
        if result.get("unreachable"):
            msg = " ".join(str(result.get("msg", "")).split())
            hint = ""
            if "IDENTIFICATION HAS CHANGED" in msg or "Host key verification failed" in msg:
                hint = (
                    " - its SSH host key is missing from or differs from the room's known_hosts: "
                    "if the Pi was re-imaged, check its new key and record it "
                    f"(make known-hosts INVENTORY={inventory} REPLACE={host}); "
                    "otherwise something else answers at its address"
                )
            # ssh's own words end with what failed (e.g. "Host key for ... has changed").
            tail = msg if len(msg) <= 300 else "..." + msg[-300:]
            errors.append(f"{host}: not reached, nothing was sent to it{hint} (ssh: {tail})")
            continue
        for line in result.get("refused") or []:
            errors.append(f"{host}: {line}")
    return errors


def password_terms(names: Iterable[str], directory: str, length: int = 32) -> list[str]:
    """Terms for ``query('ansible.builtin.password', *terms)``: one file per name.

    Files end in ``.txt`` so that Ansible never parses them as inventory.
    """
    folder = directory.rstrip("/")
    return [f"{folder}/{n}.txt length={int(length)} chars=ascii_letters,digits" for n in names]


def tenant_state(
    students: Iterable[Mapping[str, Any]] | None,
    passwords: Mapping[str, str],
    worker_user: str,
    worker_password: str,
    tags: Iterable[str] | None = ("management",),
    max_connections: int | None = None,
    max_queues: int | None = None,
    caps: Mapping[str, Any] | None = None,
    teacher: Mapping[str, Any] | None = None,
) -> dict[str, list]:
    """Desired broker state for ``pimq_rabbitmq`` from the (unnormalised) roster.

    Per present student: vhost ``<name>`` (with limits), user ``<name>`` with
    every right on that vhost only; the worker user with ``^pimq\\.`` rights on
    every present vhost; with ``caps``, the byte and length caps of every
    queue as admin-owned policies (:func:`cap_policies`). Absent students:
    vhost and user removed. With ``teacher`` (the head broker only: see
    :func:`teacher_state`), the teacher's record vhost too.
    """
    present = [s["name"] for s in roster(students, "present")]
    absent = [s["name"] for s in roster(students, "absent")]
    limits = {"max-connections": max_connections, "max-queues": max_queues}
    pimq_only = r"^pimq\."
    users = [
        {
            "name": name,
            "password": passwords[name],
            "tags": list(tags or []),
            "permissions": [{"vhost": name, "configure": ".*", "write": ".*", "read": ".*"}],
        }
        for name in present
    ]
    users.append(
        {
            "name": worker_user,
            "password": worker_password,
            "tags": [],
            "permissions": [
                {"vhost": name, "configure": pimq_only, "write": pimq_only, "read": pimq_only}
                for name in present
            ],
        }
    )
    state: dict[str, list] = {
        "vhosts": [{"name": name, "limits": limits} for name in present],
        "policies": [p for name in present for p in cap_policies(name, caps)],
        "users": users,
        "vhosts_absent": absent,
        "users_absent": absent,
    }
    if teacher:
        extra = teacher_state(teacher)
        state["vhosts"].append(extra["vhost"])
        state["policies"].append(extra["policy"])
        for user in users[:-1]:  # the students, not the worker user
            user["permissions"].append(dict(extra["student_permission"]))
        state["users"].append(extra["page_user"])
    return state


def teacher_state(teacher: Mapping[str, Any]) -> dict[str, Any]:
    """The teacher's record on the head broker (``teacher``: ``vhost``,
    ``exchange``, ``page_user``, ``page_password``, ``max_records``,
    ``max_bytes``, ``max_connections``): the vhost; a policy capping the record queue (oldest
    records dropped first: a student flooding it cannot fill the broker);
    every student's right to *publish* to the exchange there and nothing else
    (configure and read ``^$``: no queue, no reading another student's
    record); the page's user, who declares the exchange and the queue of the
    same name, binds them and reads the queue, and has no right elsewhere."""
    vhost = str(teacher["vhost"])
    exchange = str(teacher["exchange"])
    only = "^" + re.escape(exchange) + "$"
    return {
        "vhost": {
            "name": vhost,
            # each student's client opens one short connection as a job ends
            "limits": {
                "max-connections": int(teacher.get("max_connections", 256)),
                "max-queues": 4,
            },
        },
        "policy": {
            "vhost": vhost,
            "name": "pimq-record-cap",
            "pattern": only,
            "apply_to": "queues",
            "priority": 100,
            "definition": {
                "max-length": int(teacher.get("max_records", 1000)),
                "max-length-bytes": int(teacher.get("max_bytes", 1048576)),
                "overflow": "drop-head",
            },
        },
        "student_permission": {"vhost": vhost, "configure": "^$", "write": only, "read": "^$"},
        "page_user": {
            "name": str(teacher["page_user"]),
            "password": teacher["page_password"],
            "tags": [],
            "permissions": [{"vhost": vhost, "configure": only, "write": only, "read": only}],
        },
    }


#: pimq's own data queues, which carry whole shards (and dead-lettered ones):
#: pimq.tasks, pimq.dead and a routed job's pimq.job.<id>. An upload's
#: pimq.data.<upload>.<pi> is not one: its chunks are kept under the cap every
#: queue has (pimq.client.data.WINDOW), so a student's own queues of that name
#: hold no more than any other.
DATA_QUEUES = r"^pimq\.(tasks|dead|job\..+)$"


def cap_policies(vhost: str, caps: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The policies that bound one vhost's queues: every queue at most
    ``queue_bytes`` bytes and ``queue_length`` messages, pimq.tasks and
    pimq.dead at most ``data_bytes`` and ``data_length``; a publish that would
    exceed them is refused (``reject-publish``: a nack, which pimq's clients
    take as back-pressure). Regular policies owned by the admin (students have
    no policy rights; RabbitMQ 3.10's operator policies refuse ``overflow``),
    at ``priority`` and ``priority`` + 1. No caps: no policies."""
    if not caps:
        return []
    priority = int(caps.get("priority", 100))

    def policy(name: str, pattern: str, prio: int, size: Any, length: Any) -> dict[str, Any]:
        definition: dict[str, Any] = {"overflow": "reject-publish"}
        if int(size or 0):
            definition["max-length-bytes"] = int(size)
        if int(length or 0):
            definition["max-length"] = int(length)
        return {
            "vhost": vhost,
            "name": name,
            "pattern": pattern,
            "apply_to": "queues",
            "priority": prio,
            "definition": definition,
        }

    return [
        policy("pimq-caps", ".*", priority, caps.get("queue_bytes"), caps.get("queue_length")),
        policy(
            "pimq-caps-data",
            DATA_QUEUES,
            priority + 1,
            caps.get("data_bytes"),
            caps.get("data_length"),
        ),
    ]


def queue_line(queue: Mapping[str, Any]) -> str:
    """One readable status line for a queue dict from pimq_rabbitmq(gather_queues)."""
    return (
        f"{queue.get('vhost')!s:<12} {queue.get('name')!s:<40} "
        f"ready={queue.get('messages_ready', 0)!s:<6} "
        f"unacked={queue.get('messages_unacknowledged', 0)!s:<6} "
        f"consumers={queue.get('consumers', 0)}"
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "pimq_roster_errors": roster_errors,
            "pimq_roster": roster,
            "pimq_roster_from_csv": roster_from_csv,
            "pimq_password_terms": password_terms,
            "pimq_roster_accounts": roster_accounts,
            "pimq_owner_errors": owner_errors,
            "pimq_tenant_state": tenant_state,
            "pimq_queue_line": queue_line,
            "pimq_cap_policies": cap_policies,
            "pimq_teacher_state": teacher_state,
        }
