"""Filters of pimq_monitor: stable bcrypt hashes for the exporters' web configs."""

from __future__ import annotations

from typing import Any

#: bcrypt's alphabet: a salt of 21 of these plus "." (no padding bits set)
ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def bcrypt_hash(password: str, salt: str, rounds: int = 10) -> str:
    """The bcrypt hash (``$2b$``) of ``password`` with a fixed ``salt`` (21
    characters of bcrypt's alphabet, kept in the room's credentials): the
    same inputs give the same hash, so a second run changes nothing.

    bcrypt (the Python package) is the control machine's, pinned in
    requirements-dev.txt; Ansible's password_hash would need passlib."""
    import bcrypt

    salt = str(salt)[:21]
    if len(salt) != 21 or any(c not in ALPHABET for c in salt):
        raise ValueError("a bcrypt salt here is 21 characters of [./A-Za-z0-9]")
    if not 4 <= int(rounds) <= 31:
        raise ValueError("bcrypt rounds must be from 4 to 31")
    setting = f"$2b${int(rounds):02d}${salt}.".encode()
    return bcrypt.hashpw(str(password).encode("utf-8"), setting).decode()


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pimq_bcrypt": bcrypt_hash}
