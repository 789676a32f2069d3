"""The bookkeeping around a pimq module's work: shared by the pimq_accounts,
pimq_files and pimq_rabbitmq modules (Ansible ships it to the node with them)."""

from __future__ import annotations

from typing import Any, NoReturn

from ansible.module_utils.basic import AnsibleModule


def list_of(elements: str, **spec: Any) -> dict[str, Any]:
    """The argument_spec of an option that is a list of `elements` (a type name),
    empty by default; `spec` adds to it (e.g. the ``options`` of dict elements)
    or overrides it."""
    return {"type": "list", "elements": elements, "default": [], **spec}


class ModuleRun:
    """One run of a module: its ``params`` (``self.p``), whether it is a check
    (``self.check``) and the ``changes`` it made, one secret-free line each.

    A module's own class derives from it, records every change with
    :meth:`change` (which says whether to make it: not in check mode), fails
    with :meth:`fail` (the changes made before the failure are reported too)
    and returns :meth:`result` to ``exit_json``."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p: dict[str, Any] = module.params
        self.check: bool = module.check_mode
        self.changes: list[str] = []

    def change(self, text: str) -> bool:
        """Record the change `text`; True if it is to be made (not in check mode)."""
        self.changes.append(text)
        return not self.check

    def outcome(self) -> dict[str, Any]:
        """What every result reports, a failure's too: the changes so far."""
        return {"changes": self.changes}

    def result(self, **extra: Any) -> dict[str, Any]:
        """The result for ``exit_json``: `changed` if a change was recorded, the
        :meth:`outcome`, then `extra` (which may set `changed` itself)."""
        return {"changed": bool(self.changes), **self.outcome(), **extra}

    def fail(self, msg: str) -> NoReturn:
        """Fail the task with `msg` and the :meth:`outcome` so far."""
        self.module.fail_json(msg=msg, **self.outcome())

    def command(self, cmd: list[str], data: str | None = None) -> str:
        """Run `cmd` (`data` on its standard input); its output, or the task fails
        with the start of its error output (keep secrets out of `cmd`)."""
        rc, out, err = self.module.run_command(cmd, data=data)
        if rc != 0:
            self.fail(f"{' '.join(cmd)} failed (rc={rc}): {(err or out)[:500]}")
        return out
