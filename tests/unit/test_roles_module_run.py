"""roles/pimq/module_utils/pimq_run.py: the bookkeeping the pimq_* modules share."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

PATH = Path(__file__).resolve().parents[2] / "roles" / "pimq" / "module_utils" / "pimq_run.py"
spec = importlib.util.spec_from_file_location("pimq_run", PATH)
assert spec is not None and spec.loader is not None
pimq_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pimq_run)


class Failed(Exception):
    pass


class FakeModule:
    """What ModuleRun uses of an AnsibleModule."""

    def __init__(self, check_mode: bool = False, command: tuple[int, str, str] = (0, "", "")):
        self.params = {"x": 1}
        self.check_mode = check_mode
        self.command = command
        self.ran: list[tuple[list[str], str | None]] = []

    def fail_json(self, msg: str, **kwargs: Any) -> None:
        raise Failed({"msg": msg, **kwargs})

    def run_command(self, cmd: list[str], data: str | None = None) -> tuple[int, str, str]:
        self.ran.append((cmd, data))
        return self.command


def test_change_is_recorded_and_made_only_outside_check_mode() -> None:
    run = pimq_run.ModuleRun(FakeModule())
    assert run.p == {"x": 1}
    assert run.change("vhost a: created") is True
    check = pimq_run.ModuleRun(FakeModule(check_mode=True))
    assert check.change("vhost a: created") is False
    assert run.changes == check.changes == ["vhost a: created"]


def test_result_is_changed_when_a_change_was_recorded() -> None:
    run = pimq_run.ModuleRun(FakeModule())
    assert run.result() == {"changed": False, "changes": []}
    run.change("user a: removed")
    assert run.result(queues=[]) == {"changed": True, "changes": ["user a: removed"], "queues": []}
    assert pimq_run.ModuleRun(FakeModule()).result(changed=True)["changed"] is True


def test_fail_reports_the_changes_made_before_it() -> None:
    run = pimq_run.ModuleRun(FakeModule())
    run.change("vhost a: created")
    with pytest.raises(Failed) as failed:
        run.fail("boom")
    assert failed.value.args[0] == {"msg": "boom", "changes": ["vhost a: created"]}


def test_command_returns_its_output_or_fails_with_its_error() -> None:
    module = FakeModule(command=(0, "out", ""))
    assert pimq_run.ModuleRun(module).command(["ctl", "-q"], data="pw") == "out"
    assert module.ran == [(["ctl", "-q"], "pw")]
    failing = pimq_run.ModuleRun(FakeModule(command=(2, "", "E" * 600)))
    with pytest.raises(Failed) as failed:
        failing.command(["userdel", "bob"])
    assert failed.value.args[0] == {"msg": "userdel bob failed (rc=2): " + "E" * 500, "changes": []}


def test_list_of() -> None:
    assert pimq_run.list_of("str") == {"type": "list", "elements": "str", "default": []}
    assert pimq_run.list_of("dict", options={"a": {}}, default=None) == {
        "type": "list",
        "elements": "dict",
        "default": None,
        "options": {"a": {}},
    }
