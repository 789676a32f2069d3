"""The head's filter: the ``accounts`` of ``pimq_accounts`` from the roster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_nice_yaml


def student_config(
    name: str, host: str, port: int | str, password: str, managed: str, ca: str = ""
) -> str:
    """The content of a student's ``~/.config/pimq/config.yaml``: two comment lines
    (`managed`: what ``ansible_managed`` says), then exactly ``host``, ``port``,
    ``ca`` (the room CA's certificate: TLS, verified; left out when `ca` is
    empty), ``vhost``, ``user`` and ``password``, in that order, as Ansible's
    ``to_nice_yaml`` writes them."""
    settings: dict[str, Any] = {"host": host, "port": int(port)}
    if ca:
        settings["ca"] = ca
    settings.update({"vhost": name, "user": name, "password": password})
    return (
        f"# pimq client configuration of {name} ({managed}).\n"
        "# Keep it private: it holds your broker password.\n"
        f"{to_nice_yaml(settings, sort_keys=False)}"
    )


def head_accounts(
    students: Iterable[Mapping[str, Any]],
    host: str,
    port: int | str,
    passwords: Mapping[str, str],
    managed: str,
    ca: str = "",
    login_password: bool = False,
) -> list[dict[str, str]]:
    """``pimq_accounts`` ``accounts`` for the normalised present students (the
    ``pimq_roster('present')`` filter's entries): per student its ``name``, its
    ``full_name`` as ``comment``, its ``ssh_key`` and as ``config`` its
    :func:`student_config` with the broker `host`, `port` and `ca` and its
    password from `passwords` (``{name: password}``); with `login_password`,
    that password as ``password`` too (the head login's, the handout's)."""
    if not isinstance(ca, str):
        raise AnsibleFilterError(f"pimq_head_accounts: ca {ca!r} is not a path")
    if isinstance(students, (str, Mapping)) or not isinstance(students, Iterable):
        raise AnsibleFilterError(
            "pimq_head_accounts: expects the list of normalised students, "
            f"got {type(students).__name__}"
        )
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"pimq_head_accounts: port {port!r} is not a number") from None
    accounts = []
    for student in students:
        missing = [k for k in ("name", "full_name", "ssh_key") if k not in student]
        if missing:
            raise AnsibleFilterError(
                f"pimq_head_accounts: {student!r} lacks {', '.join(missing)}"
                " (pass the students through the pimq_roster filter first)"
            )
        name = student["name"]
        if name not in passwords:
            raise AnsibleFilterError(f"pimq_head_accounts: no password for student {name}")
        accounts.append(
            {
                "name": name,
                "comment": student["full_name"],
                "ssh_key": student["ssh_key"],
                "config": student_config(name, host, port, passwords[name], managed, ca),
                "password": passwords[name] if login_password else "",
            }
        )
    return accounts


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pimq_head_accounts": head_accounts}
