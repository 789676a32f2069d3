"""pimq_common's filter: the classroom's lines of /etc/hosts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def host_address(hostvars: Mapping[str, Any], ip_re: str) -> Any:
    """The address /etc/hosts gives one host (`hostvars`: its variables): its
    ``pimq_address`` if set, else its ``ansible_host`` if that matches `ip_re` (is
    an address), else the default IPv4 address in its facts ('' if none)."""
    if "pimq_address" in hostvars:
        return hostvars["pimq_address"]
    ansible_host = hostvars.get("ansible_host", "")
    if re.match(ip_re, str(ansible_host)):
        return ansible_host
    facts = hostvars.get("ansible_facts")
    default_ipv4 = facts.get("default_ipv4") if isinstance(facts, Mapping) else None
    return default_ipv4.get("address", "") if isinstance(default_ipv4, Mapping) else ""


def hosts_block(hosts: Iterable[str], hostvars: Mapping[str, Any], ip_re: str) -> str:
    """One line ``<address> <name>`` per host of `hosts` (``groups['all']``) that has an
    address (:func:`host_address`), ordered by name as Jinja's ``sort`` orders
    them (ignoring case); `hostvars` is ``hostvars``."""
    if isinstance(hosts, str) or not isinstance(hosts, Iterable):
        raise AnsibleFilterError(
            f"pimq_hosts_block: expects a list of host names, got {type(hosts).__name__}"
        )
    try:
        re.compile(ip_re)
    except (TypeError, re.error) as err:
        raise AnsibleFilterError(f"pimq_hosts_block: {ip_re!r} is not a regex: {err}") from None
    lines = []
    for name in sorted(hosts, key=lambda h: h.lower() if isinstance(h, str) else h):
        if name not in hostvars:
            raise AnsibleFilterError(f"pimq_hosts_block: no hostvars for host {name!r}")
        address = host_address(hostvars[name], ip_re)
        if address:
            lines.append(f"{address} {name}\n")
    return "".join(lines)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pimq_hosts_block": hosts_block}
