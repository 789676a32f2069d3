"""The head's filters: the ``accounts`` of ``pimq_accounts`` from the roster; the
``folders`` and ``files`` of ``pimq_files`` for a tree of example scripts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
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


def head_tree(trees: Iterable[Mapping[str, str]]) -> dict[str, list[dict[str, str]]]:
    """``pimq_files``' ``folders`` and ``files`` (owned by root, readable by everyone)
    for every text file under each tree's ``src`` (a folder on the control machine,
    read here) at the same place under its ``dest``; Python's caches are left out.
    One module call instead of ``ansible.builtin.copy``'s two round trips per file."""
    folders: dict[str, dict[str, str]] = {}
    files: list[dict[str, str]] = []
    root = {"owner": "root", "group": "root"}
    for tree in trees:
        src, dest = Path(tree["src"]), tree["dest"].rstrip("/")
        if not src.is_dir():
            raise AnsibleFilterError(f"pimq_head_tree: {src} is not a folder")
        folders.setdefault(dest, {"path": dest, "mode": "0755", **root})
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if "__pycache__" in rel.parts or path.suffix == ".pyc":
                continue
            target = f"{dest}/{rel.as_posix()}"
            if path.is_dir():
                folders.setdefault(target, {"path": target, "mode": "0755", **root})
            elif path.is_file():
                try:
                    content = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise AnsibleFilterError(f"pimq_head_tree: {path} is not text") from None
                files.append({"path": target, "content": content, "mode": "0644", **root})
    return {"folders": list(folders.values()), "files": files}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pimq_head_accounts": head_accounts, "pimq_head_tree": head_tree}
