"""The page's logins: the admin and the inventory's teachers (no Flask here).

The ``logins`` credential is JSON ``{name: {"salt": hex, "iterations": n,
"hash": hex}}``, PBKDF2-SHA256, written by ``roles/pimq_page`` (its filter
``pimq_page_logins`` makes the same hashes).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any


def login_hash(password: str, salt: bytes, iterations: int) -> str:
    """The hash the logins file keeps (the role's filter makes the same)."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations).hex()


def check_login(logins: Mapping[str, Mapping[str, Any]], name: str, password: str) -> bool:
    """True if ``name`` is a teacher and ``password`` theirs (constant time
    in the password; an unknown name costs the same hash)."""
    entry = logins.get(name) if isinstance(name, str) else None
    if not isinstance(entry, Mapping):
        entry = {"salt": "00" * 16, "iterations": 100_000, "hash": ""}
    try:
        salt = bytes.fromhex(str(entry["salt"]))
        iterations = int(entry["iterations"])
        want = str(entry["hash"])
    except (KeyError, ValueError, TypeError):
        return False
    got = login_hash(password or "", salt, iterations)
    return bool(want) and hmac.compare_digest(got, want) and name in logins
