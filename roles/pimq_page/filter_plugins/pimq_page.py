"""The page role's filters: the logins file and the page certificate's names."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def page_logins(users: Mapping[str, Any], rounds: int = 100_000) -> str:
    """The page's ``logins`` credential: JSON ``{name: {salt, iterations,
    hash}}`` with PBKDF2-SHA256 hashes (``pimq.page.app.check_login`` checks
    them). The salt is derived from the name and password, so a second run
    writes the same file (changes nothing) and a new password a new salt."""
    if not isinstance(users, Mapping):
        raise AnsibleFilterError(f"pimq_page_logins: expects {{name: password}}, got {users!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, password in sorted(users.items()):
        if not isinstance(name, str) or not name or not isinstance(password, str) or not password:
            raise AnsibleFilterError("pimq_page_logins: every login needs a name and a password")
        salt = hashlib.sha256(f"pimq-page\0{name}\0{password}".encode()).digest()[:16]
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(rounds)).hex()
        out[name] = {"salt": salt.hex(), "iterations": int(rounds), "hash": digest}
    return json.dumps(out, sort_keys=True, indent=1)


def page_sans(name: str, hostvars: Mapping[str, Any]) -> list[str]:
    """subjectAltName entries of the head's page certificate: its inventory
    name and its addresses (as the broker certificates have them)."""
    sans: list[str] = []
    for value in (name, hostvars.get("pimq_address"), hostvars.get("ansible_host")):
        if value is None or str(value).strip() == "":
            continue
        text = str(value).strip()
        try:
            entry = f"IP:{ipaddress.ip_address(text)}"
        except ValueError:
            entry = f"DNS:{text}"
        if entry not in sans:
            sans.append(entry)
    return sans


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pimq_page_logins": page_logins, "pimq_page_sans": page_sans}
