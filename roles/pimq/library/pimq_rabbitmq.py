#!/usr/bin/python
"""Declarative RabbitMQ state through the management HTTP API (stdlib only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pimq_rabbitmq
short_description: Converge RabbitMQ vhosts, users, permissions and limits through the management API
description:
  - Talks to the RabbitMQ management HTTP API of the broker on the managed node
    (normally C(http://127.0.0.1:15672)) with the Python standard library only, so
    it needs neither C(requests) nor C(rabbitmqctl) arguments carrying secrets.
  - Passwords never appear in a process argument list. Existing passwords are
    checked against the stored salted hash locally, without a login. New
    passwords are sent as a salted hash in the HTTP body.
  - If the administrator cannot log in (fresh broker, or its password was
    changed in the inventory), it is created or its password reset: through the
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
    description: Create the administrator (or reset its password) with rabbitmqctl through stdin when it cannot log in.
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
  description: One line per change made (or that would be made in check mode). Never contains a secret.
  type: list
  returned: always
queues:
  description: Queues (vhost, name, messages, messages_ready, messages_unacknowledged, consumers) when gather_queues.
  type: list
  returned: when gather_queues
"""

import base64
import hashlib
import hmac
import json
import os
import time
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from ansible.module_utils.basic import AnsibleModule

HASHES = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}
DEFAULT_HASH = "rabbit_password_hashing_sha256"


def q(name):
    return quote(name, safe="")


def password_hash(password, algorithm=DEFAULT_HASH):
    salt = os.urandom(4)
    digest = HASHES[algorithm](salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def password_matches(password, stored, algorithm):
    if not stored or algorithm not in HASHES:
        return False
    raw = base64.b64decode(stored)
    salt, digest = raw[:4], raw[4:]
    return hmac.compare_digest(HASHES[algorithm](salt + password.encode("utf-8")).digest(), digest)


def as_tags(value):
    if isinstance(value, str):
        return sorted(t for t in value.replace(" ", "").split(",") if t)
    return sorted(value or [])


class Unreachable(Exception):
    pass


class Api:
    def __init__(self, module, base, user, password):
        self.module = module
        self.base = base.rstrip("/")
        self.set_auth(user, password)

    def set_auth(self, user, password):
        token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
        self.auth = "Basic " + token

    def call(self, method, path, body=None, missing_ok=False):
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
                raise Unreachable("HTTP %s" % err.code)
            detail = err.read().decode("utf-8", "replace")[:500]
            self.module.fail_json(msg="RabbitMQ API %s %s failed: HTTP %s %s" % (method, path, err.code, detail))
        except (URLError, ConnectionError, OSError) as err:
            raise Unreachable(str(err))


class Converger:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.changes = []
        self.api = Api(module, self.p["api_url"], self.p["login_user"], self.p["login_password"])

    def change(self, text):
        self.changes.append(text)
        return not self.check

    # --- connection and administrator -------------------------------------------------
    def wait_for_api(self):
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

    def ctl(self, args, data=None):
        cmd = [self.p["rabbitmqctl"], "-q"] + args
        rc, out, err = self.module.run_command(cmd, data=data)
        if rc != 0:
            self.module.fail_json(msg="%s failed (rc=%s): %s" % (" ".join(cmd), rc, (err or out)[:500]))
        return out

    def bootstrap_with_guest(self):
        """A fresh broker still has guest/guest (an administrator, loopback only):
        create the administrator through the API, without starting an Erlang VM
        for each rabbitmqctl call. None: guest cannot do it (use rabbitmqctl)."""
        user = self.p["login_user"]
        guest = Api(self.module, self.p["api_url"], "guest", "guest")
        status, me = guest.call("GET", "/api/whoami")
        if status != 200 or "administrator" not in as_tags((me or {}).get("tags")):
            return None
        status, _ = guest.call("GET", "/api/users/%s" % q(user), missing_ok=True)
        if not self.change("admin %s: %s" % (user, "created" if status == 404 else "password reset")):
            return False
        guest.call("PUT", "/api/users/%s" % q(user),
                   {"password_hash": password_hash(self.p["login_password"]),
                    "hashing_algorithm": DEFAULT_HASH, "tags": "administrator"})
        guest.call("PUT", "/api/permissions/%%2F/%s" % q(user), {"configure": ".*", "write": ".*", "read": ".*"})
        return True

    def bootstrap_admin(self):
        user = self.p["login_user"]
        if not self.p["bootstrap"]:
            self.module.fail_json(msg="Cannot log in to the RabbitMQ API as %s and bootstrap is disabled" % user)
        done = self.bootstrap_with_guest()
        if done is not None:
            if done:
                self.wait_for_login()
            return done
        if self.module.get_bin_path(self.p["rabbitmqctl"]) is None and not os.path.exists(self.p["rabbitmqctl"]):
            self.module.fail_json(msg="Cannot log in as %s and rabbitmqctl is not available" % user)
        users = json.loads(self.ctl(["list_users", "--formatter", "json"]) or "[]")
        exists = any(u.get("user") == user for u in users)
        if exists:
            if self.change("admin %s: password reset" % user):
                self.ctl(["change_password", user], data=self.p["login_password"])
        else:
            if self.change("admin %s: created" % user):
                self.ctl(["add_user", user], data=self.p["login_password"])
        if not self.check:
            self.ctl(["set_user_tags", user, "administrator"])
            self.ctl(["set_permissions", "-p", "/", user, ".*", ".*", ".*"])
            self.wait_for_login()
            return True
        return False

    def wait_for_login(self):
        status, _ = self.api.call("GET", "/api/whoami")
        if status != 200:
            self.module.fail_json(msg="Administrator %s still cannot log in after bootstrap (HTTP %s)"
                                  % (self.p["login_user"], status))

    # --- vhosts ------------------------------------------------------------------------
    def existing_vhosts(self):
        _, data = self.api.call("GET", "/api/vhosts?columns=name")
        return {v["name"] for v in data or []}

    def read_state(self):
        """Every user, permission and vhost limit of the broker in three requests (one
        per student and kind would grow with the roster)."""
        _, users = self.api.call("GET", "/api/users")
        self.users = {u["name"]: u for u in users or []}
        _, perms = self.api.call("GET", "/api/permissions")
        self.perms = {}
        for perm in perms or []:
            self.perms.setdefault(perm["user"], {})[perm["vhost"]] = perm
        _, limits = self.api.call("GET", "/api/vhost-limits")
        self.limits = {}
        for entry in limits or []:
            self.limits.setdefault(entry["vhost"], {}).update(entry.get("value") or {})

    def converge_vhost(self, spec, existing):
        name = spec["name"]
        if name not in existing:
            if self.change("vhost %s: created" % name):
                self.api.call("PUT", "/api/vhosts/%s" % q(name), {})
            current = {}
        else:
            current = self.limits.get(name, {})
        for limit, value in sorted((spec.get("limits") or {}).items()):
            have = current.get(limit)
            if value is None:
                if have is not None and self.change("vhost %s: limit %s removed" % (name, limit)):
                    self.api.call("DELETE", "/api/vhost-limits/%s/%s" % (q(name), q(limit)), missing_ok=True)
            elif have is None or int(have) != int(value):
                if self.change("vhost %s: limit %s %s -> %s" % (name, limit, have, value)):
                    self.api.call("PUT", "/api/vhost-limits/%s/%s" % (q(name), q(limit)), {"value": int(value)})

    # --- users -------------------------------------------------------------------------
    def converge_user(self, spec):
        name = spec["name"]
        password = spec.get("password") or ""
        tags = as_tags(spec.get("tags"))
        current = self.users.get(name)
        body = {"password_hash": password_hash(password), "hashing_algorithm": DEFAULT_HASH,
                "tags": ",".join(tags)}
        if current is None:
            if self.change("user %s: created" % name):
                self.api.call("PUT", "/api/users/%s" % q(name), body)
            existing_perms = {}
        else:
            reasons = []
            if not password_matches(password, current.get("password_hash"),
                                    current.get("hashing_algorithm", DEFAULT_HASH)):
                reasons.append("password")
            if as_tags(current.get("tags")) != tags:
                reasons.append("tags %s -> %s" % (",".join(as_tags(current.get("tags"))) or "-", ",".join(tags) or "-"))
            if reasons and self.change("user %s: %s updated" % (name, ", ".join(reasons))):
                self.api.call("PUT", "/api/users/%s" % q(name), body)
            existing_perms = self.perms.get(name, {})
        wanted = {}
        for perm in spec.get("permissions") or []:
            wanted[perm["vhost"]] = {k: perm.get(k, "^$") for k in ("configure", "write", "read")}
        for vhost, perm in sorted(wanted.items()):
            have = existing_perms.get(vhost)
            if have is None or any(have.get(k) != perm[k] for k in perm):
                if self.change("user %s: permissions on vhost %s set to %s %s %s"
                               % (name, vhost, perm["configure"], perm["write"], perm["read"])):
                    self.api.call("PUT", "/api/permissions/%s/%s" % (q(vhost), q(name)), perm)
        if spec.get("permissions_exclusive", True):
            for vhost in sorted(set(existing_perms) - set(wanted)):
                if self.change("user %s: permissions on vhost %s cleared" % (name, vhost)):
                    self.api.call("DELETE", "/api/permissions/%s/%s" % (q(vhost), q(name)), missing_ok=True)

    def remove_user(self, name):
        if name in self.users and self.change("user %s: removed" % name):
            self.api.call("DELETE", "/api/users/%s" % q(name), missing_ok=True)

    def run(self):
        p = self.p
        for name in p["users_absent"]:
            if name == p["login_user"]:
                self.module.fail_json(msg="Refusing to remove the administrator %s" % name)
        for name in p["vhosts_absent"]:
            if name == "/":
                self.module.fail_json(msg="Refusing to remove the default vhost /")
        status = self.wait_for_api()
        if status == 401:
            if not self.bootstrap_admin():
                return dict(changed=True, changes=self.changes)
        elif status != 200:
            if self.check:
                self.changes.append("broker API not reachable (%s): everything would be configured" % status)
                return dict(changed=True, changes=self.changes)
            self.module.fail_json(msg="RabbitMQ management API at %s not reachable: %s" % (p["api_url"], status))

        vhosts = self.existing_vhosts()
        self.read_state()
        for spec in p["vhosts"]:
            self.converge_vhost(spec, vhosts)
        for spec in p["users"]:
            self.converge_user(spec)
        for name in p["users_absent"]:
            self.remove_user(name)
        for name in p["vhosts_absent"]:
            if name in vhosts and self.change("vhost %s: removed" % name):
                self.api.call("DELETE", "/api/vhosts/%s" % q(name), missing_ok=True)
        result = dict(changed=bool(self.changes), changes=self.changes)
        if p["gather_queues"]:
            _, queues = self.api.call(
                "GET", "/api/queues?columns=vhost,name,messages,messages_ready,messages_unacknowledged,consumers")
            result["queues"] = [
                {k: qu.get(k, 0) for k in ("vhost", "name", "messages", "messages_ready",
                                          "messages_unacknowledged", "consumers")}
                for qu in queues or []
            ]
        return result


def main():
    user_options = dict(
        name=dict(type="str", required=True),
        password=dict(type="str", required=True, no_log=True),
        tags=dict(type="list", elements="str", default=[]),
        permissions=dict(type="list", elements="dict", default=[]),
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
            vhosts=dict(type="list", elements="dict", default=[]),
            vhosts_absent=dict(type="list", elements="str", default=[]),
            users=dict(type="list", elements="dict", default=[], options=user_options),
            users_absent=dict(type="list", elements="str", default=[]),
            gather_queues=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**Converger(module).run())


if __name__ == "__main__":
    main()
