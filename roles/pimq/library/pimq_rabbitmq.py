#!/usr/bin/python
"""Declarative RabbitMQ state through the management HTTP API (stdlib only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pimq_rabbitmq
short_description: Converge RabbitMQ vhosts, users, permissions and limits through the
  management API
description:
  - Talks to the RabbitMQ management HTTP API of the broker on the managed node
    (normally C(http://127.0.0.1:15672)) with the Python standard library only, so
    it needs neither C(requests) nor C(rabbitmqctl) arguments carrying secrets.
  - Passwords never appear in a process argument list. Existing passwords are
    checked against the stored salted hash locally, without a login. New
    passwords are sent as a salted hash in the HTTP body.
  - If the administrator cannot log in (fresh broker, or its password was
    changed in the inventory), it is created or its password reset - through the
    API as C(guest) while a fresh broker still has it (loopback only; removed
    by C(users_absent)), else with C(rabbitmqctl add_user NAME) /
    C(rabbitmqctl change_password NAME), the password written to the command's
    standard input.
  - Supports check mode and reports every change in C(changes).
options:
  api_url:
    description: Base URL of the management API.
    type: str
    default: http://127.0.0.1:15672
  login_user:
    description: Administrator user (tag administrator).
    type: str
    required: true
  login_password:
    description: Its password.
    type: str
    required: true
  bootstrap:
    description:
      Create the administrator (or reset its password) with rabbitmqctl through stdin
      when it cannot log in.
    type: bool
    default: true
  rabbitmqctl:
    description: Path of rabbitmqctl, used only for the bootstrap.
    type: str
    default: rabbitmqctl
  wait_timeout:
    description: Seconds to wait for the API to answer (the broker may be starting).
    type: int
    default: 120
  vhosts:
    description: Vhosts that must exist, with their limits (a limit set to null is removed).
    type: list
    elements: dict
    default: []
  vhosts_absent:
    description: Vhosts that must not exist.
    type: list
    elements: str
    default: []
  policies:
    description:
      - Policies that must exist, each with C(vhost), C(name), C(pattern),
        C(apply_to) (default C(queues)), C(priority) (default 0) and
        C(definition) (a mapping, e.g. C({max-length-bytes: 1048576, overflow:
        reject-publish})). A policy is rewritten when any of these differs.
      - Policies of a vhost not listed are left alone.
    type: list
    elements: dict
    default: []
  users:
    description:
      - Users that must exist. Each has C(name), C(password), C(tags) (list) and
        C(permissions) (list of C(vhost), C(configure), C(write), C(read)).
      - With C(permissions_exclusive) (default true) permissions on vhosts not listed are cleared.
    type: list
    elements: dict
    default: []
  users_absent:
    description: Users that must not exist.
    type: list
    elements: str
    default: []
  gather_queues:
    description: Return every queue with its depth and consumers in C(queues).
    type: bool
    default: false
author: pimq
"""

EXAMPLES = r"""
- name: Student vhost and user
  pimq_rabbitmq:
    login_user: pimq-admin
    login_password: "{{ pimq_admin_password }}"
    vhosts:
      - name: alice
        limits: {max-connections: 64, max-queues: 64}
    policies:
      - vhost: alice
        name: pimq-caps
        pattern: ".*"
        priority: 100
        definition: {max-length-bytes: 2097152, overflow: reject-publish}
    users:
      - name: alice
        password: "{{ alice_password }}"
        tags: [management]
        permissions: [{vhost: alice, configure: ".*", write: ".*", read: ".*"}]
    users_absent: [guest]
  no_log: true
"""

RETURN = r"""
changes:
  description: >-
    One line per change made (or that would be made in check mode), e.g.
    C(vhost alice: created). Never contains a secret (no password or hash).
  type: list
  returned: always
queues:
  description:
    Queues (vhost, name, messages, messages_ready, messages_unacknowledged, consumers)
    when gather_queues.
  type: list
  returned: when gather_queues
"""

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pimq_run import ModuleRun, list_of

HASHES = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}
DEFAULT_HASH = "rabbit_password_hashing_sha256"
QUEUE_COLUMNS = (
    "vhost",
    "name",
    "messages",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
)


def q(name: str) -> str:
    return quote(name, safe="")


def password_hash(password: str, algorithm: str = DEFAULT_HASH) -> str:
    salt = os.urandom(4)
    digest = HASHES[algorithm](salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def password_matches(password: str, stored: str | None, algorithm: str) -> bool:
    if not stored or algorithm not in HASHES:
        return False
    raw = base64.b64decode(stored)
    salt, digest = raw[:4], raw[4:]
    return hmac.compare_digest(HASHES[algorithm](salt + password.encode("utf-8")).digest(), digest)


def policy_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """A policy definition with whole numbers as ints (the inventory may give
    strings; the API returns ints): compared and sent in one form."""
    out: dict[str, Any] = {}
    for key, value in definition.items():
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        out[str(key)] = value
    return out


def as_tags(value: str | list[str] | None) -> list[str]:
    if isinstance(value, str):
        return sorted(t for t in value.replace(" ", "").split(",") if t)
    return sorted(value or [])


class Unreachable(Exception):
    pass


class Api:
    def __init__(self, fail: Callable[[str], NoReturn], base: str, user: str, password: str):
        self.fail = fail
        self.base = base.rstrip("/")
        self.set_auth(user, password)

    def set_auth(self, user: str, password: str) -> None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.auth = "Basic " + token

    def call(
        self, method: str, path: str, body: Any = None, missing_ok: bool = False
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", self.auth)
        req.add_header("Content-Type", "application/json")
        try:
            with urlopen(req, timeout=30) as resp:
                text = resp.read().decode("utf-8")
                return resp.status, (json.loads(text) if text.strip() else None)
        except HTTPError as err:
            if err.code == 404 and missing_ok:
                return 404, None
            if err.code == 401:
                return 401, None
            if err.code in (502, 503):
                raise Unreachable(f"HTTP {err.code}") from err
            detail = err.read().decode("utf-8", "replace")[:500]
            self.fail(f"RabbitMQ API {method} {path} failed: HTTP {err.code} {detail}")
        except (URLError, ConnectionError, OSError) as err:
            raise Unreachable(str(err)) from err


class Converger(ModuleRun):
    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        self.api = Api(self.fail, self.p["api_url"], self.p["login_user"], self.p["login_password"])

    # --- connection and administrator -------------------------------------------------
    def wait_for_api(self) -> int | str:
        deadline = time.time() + self.p["wait_timeout"]
        last = ""
        while True:
            try:
                status, _ = self.api.call("GET", "/api/whoami")
                return status
            except Unreachable as err:
                last = str(err)
            if time.time() > deadline:
                return "unreachable: " + last
            time.sleep(2)

    def ctl(self, args: list[str], data: str | None = None) -> str:
        return self.command([self.p["rabbitmqctl"], "-q", *args], data=data)

    def bootstrap_with_guest(self) -> bool | None:
        """A fresh broker still has guest/guest (an administrator, loopback only):
        create the administrator through the API, without starting an Erlang VM
        for each rabbitmqctl call. None: guest cannot do it (use rabbitmqctl)."""
        user = self.p["login_user"]
        guest = Api(self.fail, self.p["api_url"], "guest", "guest")
        status, me = guest.call("GET", "/api/whoami")
        if status != 200 or "administrator" not in as_tags((me or {}).get("tags")):
            return None
        status, _ = guest.call("GET", f"/api/users/{q(user)}", missing_ok=True)
        if not self.change(f"admin {user}: {'created' if status == 404 else 'password reset'}"):
            return False
        admin = {
            "password_hash": password_hash(self.p["login_password"]),
            "hashing_algorithm": DEFAULT_HASH,
            "tags": "administrator",
        }
        guest.call("PUT", f"/api/users/{q(user)}", admin)
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        guest.call("PUT", f"/api/permissions/%2F/{q(user)}", everything)
        return True

    def bootstrap_admin(self) -> bool:
        user = self.p["login_user"]
        if not self.p["bootstrap"]:
            self.fail(f"Cannot log in to the RabbitMQ API as {user} and bootstrap is disabled")
        done = self.bootstrap_with_guest()
        if done is not None:
            if done:
                self.wait_for_login()
            return done
        ctl = self.p["rabbitmqctl"]
        if self.module.get_bin_path(ctl) is None and not os.path.exists(ctl):
            self.fail(f"Cannot log in as {user} and rabbitmqctl is not available")
        users = json.loads(self.ctl(["list_users", "--formatter", "json"]) or "[]")
        exists = any(u.get("user") == user for u in users)
        if exists:
            if self.change(f"admin {user}: password reset"):
                self.ctl(["change_password", user], data=self.p["login_password"])
        else:
            if self.change(f"admin {user}: created"):
                self.ctl(["add_user", user], data=self.p["login_password"])
        if not self.check:
            self.ctl(["set_user_tags", user, "administrator"])
            self.ctl(["set_permissions", "-p", "/", user, ".*", ".*", ".*"])
            self.wait_for_login()
            return True
        return False

    def wait_for_login(self) -> None:
        status, _ = self.api.call("GET", "/api/whoami")
        if status != 200:
            self.fail(
                f"Administrator {self.p['login_user']} still cannot log in after bootstrap"
                f" (HTTP {status})"
            )

    # --- vhosts ------------------------------------------------------------------------
    def existing_vhosts(self) -> set[str]:
        _, data = self.api.call("GET", "/api/vhosts?columns=name")
        return {v["name"] for v in data or []}

    def read_state(self) -> None:
        """Every user, permission and vhost limit of the broker in three requests (one
        per student and kind would grow with the roster)."""
        _, users = self.api.call("GET", "/api/users")
        self.users = {u["name"]: u for u in users or []}
        _, perms = self.api.call("GET", "/api/permissions")
        self.perms: dict[str, dict[str, Any]] = {}
        for perm in perms or []:
            self.perms.setdefault(perm["user"], {})[perm["vhost"]] = perm
        _, limits = self.api.call("GET", "/api/vhost-limits")
        self.limits: dict[str, dict[str, Any]] = {}
        for entry in limits or []:
            self.limits.setdefault(entry["vhost"], {}).update(entry.get("value") or {})

    def converge_vhost(self, spec: dict[str, Any], existing: set[str]) -> None:
        name = spec["name"]
        if name not in existing:
            if self.change(f"vhost {name}: created"):
                self.api.call("PUT", f"/api/vhosts/{q(name)}", {})
            current = {}
        else:
            current = self.limits.get(name, {})
        for limit, value in sorted((spec.get("limits") or {}).items()):
            have = current.get(limit)
            path = f"/api/vhost-limits/{q(name)}/{q(limit)}"
            if value is None:
                if have is not None and self.change(f"vhost {name}: limit {limit} removed"):
                    self.api.call("DELETE", path, missing_ok=True)
            elif (have is None or int(have) != int(value)) and self.change(
                f"vhost {name}: limit {limit} {have} -> {value}"
            ):
                self.api.call("PUT", path, {"value": int(value)})

    # --- policies ----------------------------------------------------------------------
    def read_policies(self) -> None:
        """Every policy of the broker in one request (one per vhost would grow with
        the roster; community.rabbitmq.rabbitmq_policy starts an Erlang VM per call)."""
        _, policies = self.api.call("GET", "/api/policies")
        self.policies = {(p["vhost"], p["name"]): p for p in policies or []}

    def converge_policy(self, spec: dict[str, Any], created: bool) -> None:
        vhost, name = spec["vhost"], spec["name"]
        wanted = {
            "pattern": spec["pattern"],
            "apply-to": spec.get("apply_to") or "queues",
            "priority": int(spec.get("priority") or 0),
            "definition": policy_definition(spec.get("definition") or {}),
        }
        have = None if created else self.policies.get((vhost, name))
        if have is not None:
            current = {
                "pattern": have.get("pattern"),
                "apply-to": have.get("apply-to"),
                "priority": int(have.get("priority") or 0),
                "definition": policy_definition(have.get("definition") or {}),
            }
            if current == wanted:
                return
            what = ", ".join(sorted(k for k in wanted if current[k] != wanted[k]))
            change = f"vhost {vhost}: policy {name} updated ({what})"
        else:
            change = f"vhost {vhost}: policy {name} set"
        if self.change(change):
            self.api.call("PUT", f"/api/policies/{q(vhost)}/{q(name)}", wanted)

    # --- users -------------------------------------------------------------------------
    def converge_user(self, spec: dict[str, Any]) -> None:
        name = spec["name"]
        password = spec.get("password") or ""
        tags = as_tags(spec.get("tags"))
        current = self.users.get(name)
        body = {
            "password_hash": password_hash(password),
            "hashing_algorithm": DEFAULT_HASH,
            "tags": ",".join(tags),
        }
        if current is None:
            if self.change(f"user {name}: created"):
                self.api.call("PUT", f"/api/users/{q(name)}", body)
            existing_perms = {}
        else:
            reasons = []
            if not password_matches(
                password,
                current.get("password_hash"),
                current.get("hashing_algorithm", DEFAULT_HASH),
            ):
                reasons.append("password")
            have_tags = as_tags(current.get("tags"))
            if have_tags != tags:
                reasons.append(f"tags {','.join(have_tags) or '-'} -> {','.join(tags) or '-'}")
            if reasons and self.change(f"user {name}: {', '.join(reasons)} updated"):
                self.api.call("PUT", f"/api/users/{q(name)}", body)
            existing_perms = self.perms.get(name, {})
        wanted = {}
        for perm in spec.get("permissions") or []:
            wanted[perm["vhost"]] = {k: perm.get(k, "^$") for k in ("configure", "write", "read")}
        for vhost, perm in sorted(wanted.items()):
            have = existing_perms.get(vhost)
            if have is None or any(have.get(k) != perm[k] for k in perm):
                rights = f"{perm['configure']} {perm['write']} {perm['read']}"
                if self.change(f"user {name}: permissions on vhost {vhost} set to {rights}"):
                    self.api.call("PUT", f"/api/permissions/{q(vhost)}/{q(name)}", perm)
        if spec.get("permissions_exclusive", True):
            for vhost in sorted(set(existing_perms) - set(wanted)):
                if self.change(f"user {name}: permissions on vhost {vhost} cleared"):
                    path = f"/api/permissions/{q(vhost)}/{q(name)}"
                    self.api.call("DELETE", path, missing_ok=True)

    def remove_user(self, name: str) -> None:
        if name in self.users and self.change(f"user {name}: removed"):
            self.api.call("DELETE", f"/api/users/{q(name)}", missing_ok=True)

    def run(self) -> dict[str, Any]:
        p = self.p
        for name in p["users_absent"]:
            if name == p["login_user"]:
                self.fail(f"Refusing to remove the administrator {name}")
        for name in p["vhosts_absent"]:
            if name == "/":
                self.fail("Refusing to remove the default vhost /")
        status = self.wait_for_api()
        if status == 401 and not self.bootstrap_admin():
            return self.result(changed=True)  # check mode: the administrator would be made
        if status not in (200, 401):
            if self.check:
                self.changes.append(
                    f"broker API not reachable ({status}): everything would be configured"
                )
                return self.result(changed=True)
            self.fail(f"RabbitMQ management API at {p['api_url']} not reachable: {status}")

        vhosts = self.existing_vhosts()
        self.read_state()
        self.read_policies()
        for spec in p["vhosts"]:
            self.converge_vhost(spec, vhosts)
        for spec in p["policies"]:
            self.converge_policy(spec, spec["vhost"] not in vhosts)
        for spec in p["users"]:
            self.converge_user(spec)
        for name in p["users_absent"]:
            self.remove_user(name)
        for name in p["vhosts_absent"]:
            if name in vhosts and self.change(f"vhost {name}: removed"):
                self.api.call("DELETE", f"/api/vhosts/{q(name)}", missing_ok=True)
        result = self.result()
        if p["gather_queues"]:
            _, queues = self.api.call("GET", f"/api/queues?columns={','.join(QUEUE_COLUMNS)}")
            result["queues"] = [{k: qu.get(k, 0) for k in QUEUE_COLUMNS} for qu in queues or []]
        return result


def main() -> None:
    user_options = dict(
        name=dict(type="str", required=True),
        password=dict(type="str", required=True, no_log=True),
        tags=list_of("str"),
        permissions=list_of("dict"),
        permissions_exclusive=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=dict(
            api_url=dict(type="str", default="http://127.0.0.1:15672"),
            login_user=dict(type="str", required=True),
            login_password=dict(type="str", required=True, no_log=True),
            bootstrap=dict(type="bool", default=True),
            rabbitmqctl=dict(type="str", default="rabbitmqctl"),
            wait_timeout=dict(type="int", default=120),
            vhosts=list_of("dict"),
            vhosts_absent=list_of("str"),
            policies=list_of("dict"),
            users=list_of("dict", options=user_options),
            users_absent=list_of("str"),
            gather_queues=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**Converger(module).run())


if __name__ == "__main__":
    main()
