"""pimq_broker's filter: the subject alternative names of a broker's certificate."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def _entry(value: str) -> str:
    try:
        return f"IP:{ipaddress.ip_address(value)}"
    except ValueError:
        return f"DNS:{value}"


def tls_sans(name: str, hostvars: Mapping[str, Any]) -> list[str]:
    """The SAN entries (``DNS:...``/``IP:...``) of the broker `name` (its
    inventory name) whose variables are `hostvars`: its inventory name, then its
    ``pimq_address`` and its ``ansible_host`` (each an address or a host name,
    as clients may use either), without repeats, in that order. Only inventory
    values, never facts: the names stay the same from run to run, so the
    certificate is renewed only when the inventory changes them."""
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError(f"pimq_tls_sans: expects a host name, got {name!r}")
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(
            f"pimq_tls_sans: expects the host's variables, got {type(hostvars).__name__}"
        )
    sans: list[str] = []
    for value in (name, hostvars.get("pimq_address"), hostvars.get("ansible_host")):
        if value is None or str(value).strip() == "":
            continue
        entry = _entry(str(value).strip())
        if entry not in sans:
            sans.append(entry)
    return sans


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pimq_tls_sans": tls_sans}
