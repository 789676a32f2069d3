"""The teacher's tools, their pure parts: the running jobs of a vhost from its
queues, which to stop, the rights lent to the admin, the stop message and what a
`pimq run` does with it (on the in-process broker), the playbook's filters and
the handout line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.fake_amqp import Room, make_room, start_worker
from support.plugins import load

from pimq.client.controller import Controller
from pimq.config import StudentConfig
from pimq.errors import JobStopped
from pimq.protocol import topology
from pimq.protocol.wire import (
    decode_control,
    decode_results,
    decode_stopped,
    encode_cancel,
    encode_stopped,
)
from pimq.teacher import RIGHTS, Refused, RunningJob, choose, exact, running_jobs

REPO = Path(__file__).resolve().parents[2]
STUDENT = StudentConfig(vhost="s1", user="stud1", password="pw1", host="fake")


filters = load(REPO / "roles/pimq_teacher/filter_plugins/pimq_teacher.py", "pimq_teacher_filters")
handout = load(REPO / "tools/handout_line.py", "handout_line")


def row(name: str, **kw) -> dict:
    return {"name": name, "durable": True, "exclusive": False, "consumers": 1, "messages": 0, **kw}


def test_running_jobs_are_the_durable_result_queues():
    rows = [
        row("pimq.result.00000000000000bb", consumers=0, messages=3),
        row("pimq.result.00000000000000aa"),
        row("pimq.result.00000000000000cc", exclusive=True),  # a pimq data reply queue
        row("pimq.result.00000000000000dd", durable=False),
        row("pimq.result.not-a-job"),
        row(topology.TASKS),
        row(topology.DEAD),
        row("pimq.job.00000000000000aa"),
        "garbage",
    ]
    assert running_jobs(rows) == [
        RunningJob("00000000000000aa", True, 0),
        RunningJob("00000000000000bb", False, 3),
    ]


def test_choose_every_job_or_the_ones_named():
    jobs = [RunningJob("aaaaaaaa", True, 0), RunningJob("bbbbbbbb", False, 0)]
    assert choose("alice", jobs, []) == jobs
    assert choose("alice", jobs, ["bbbbbbbb", "bbbbbbbb"]) == [jobs[1]]
    with pytest.raises(Refused, match=r"no running job cccccccc of student alice \(running: "
                       r"aaaaaaaa, bbbbbbbb\)"):  # fmt: skip
        choose("alice", jobs, ["cccccccc"])
    with pytest.raises(Refused, match="student alice has no running job"):
        choose("alice", [], [])


def test_the_rights_lent_to_the_admin_are_exactly_the_names_needed():
    write = re.compile(RIGHTS["stop"]["write"])
    assert write.match(topology.CONTROL) and write.match(topology.RESULTS)
    for other in (topology.TASKS, topology.DEAD, "pimq.controlx", "pimqxcontrol", ""):
        assert not write.match(other), other
    read = re.compile(RIGHTS["purge-dead"]["read"])
    assert read.match(topology.DEAD) and not read.match(topology.TASKS)
    for rights in RIGHTS.values():
        assert rights["configure"] == "^$"
        assert not re.match(rights["configure"], topology.DEAD)
    assert exact("a.b") == r"^(a\.b)$"


def test_the_stop_message_is_no_result_and_no_other_message():
    body = encode_stopped("00000000000000aa")
    assert decode_stopped(body) == ("00000000000000aa", "teacher")
    with pytest.raises(Exception, match="malformed result"):
        decode_results(body)  # an older controller drops it
    assert decode_stopped(b'{"stopped": "../x"}') is None
    assert decode_stopped(b'{"job": "00000000000000aa", "results": []}') is None
    assert decode_stopped(b"not json") is None
    assert decode_control(encode_cancel("00000000000000aa", "stopped")) == (
        "00000000000000aa",
        "stopped",
    )


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return make_room(monkeypatch, tmp_path)


def test_a_pimq_run_told_it_was_stopped_exits_saying_so(room):
    """A job of long shards (``nap``: a virtual second per byte) stopped as the
    teacher's tool does it: the cancel on pimq.control reaches the worker, the
    stop message ends the controller with JobStopped (exit code 5)."""
    worker = start_worker(room, ("s1",))
    controller = Controller(STUDENT, "nap", "{}", lambda _n: [b"x" * 600] * 3, progress=False)

    def teacher() -> None:
        room.broker.put("s1", topology.CONTROL, "", encode_cancel(controller.job, "stopped"),
                        topology.CONTROL_PROPS)  # fmt: skip
        room.broker.put("s1", topology.RESULTS, controller.queue,
                        encode_stopped(controller.job), topology.RESULT_PROPS)  # fmt: skip

    room.loop.call_later(5.0, teacher)
    with pytest.raises(JobStopped, match=f"job {controller.job} was stopped by the teacher"):
        controller.run()
    assert JobStopped.exit_code == 5
    assert room.loop.now < 60, "the controller waited for the shards instead"
    assert controller.queue not in room.broker.vhosts["s1"].queues
    # the worker dropped what it held of the job (the fake pool does not kill the
    # running shard: the real one does, tests/classroom/test_teacher_tools.py)
    link = worker.links[0]
    assert controller.job in link.cancelled
    assert not [d for d in link.pending if d.shard.job == controller.job]


def test_a_stop_message_of_another_job_is_ignored(room):
    start_worker(room, ("s1",))
    controller = Controller(STUDENT, "square", "{}", lambda _n: [b"2", b"3"], progress=False)
    room.loop.call_later(
        0.0,
        lambda: room.broker.put("s1", topology.RESULTS, controller.queue,
                                encode_stopped("00000000000000ff"), topology.RESULT_PROPS),
    )  # fmt: skip
    outcome = controller.run()
    assert [outcome.results[i].value for i in range(2)] == [4, 9]


def test_teacher_result_reads_the_tools_answer():
    ok = {"stdout": '{"vhost": "alice", "purged": 3, "changed": true}\n', "rc": 0}
    assert filters.teacher_result(ok) == {"vhost": "alice", "purged": 3, "changed": True}
    broken = {"stdout": "", "stderr": "Traceback...\nModuleNotFoundError: pimq.teacher", "rc": 1}
    assert filters.teacher_result(broken) == {
        "error": "python -m pimq.teacher failed: ModuleNotFoundError: pimq.teacher",
        "changed": False,
    }
    assert filters.teacher_result({"skipped": True}) == {"changed": False}


def test_stop_lines_say_what_happened_to_each_job():
    doc = {
        "jobs": [{"job": "aaaaaaaa", "attached": True}, {"job": "bbbbbbbb", "attached": False}],
        "stopping": ["aaaaaaaa", "bbbbbbbb", "cccccccc"],
        "stopped": ["aaaaaaaa", "bbbbbbbb"],
    }
    lines = filters.stop_lines(doc, "alice")
    assert lines[0].startswith("alice: job aaaaaaaa stopped:") and "exit code 5" in lines[0]
    assert "no pimq run was waiting" in lines[1]
    assert "just ended" in lines[2]
    assert filters.stop_lines(doc, "alice", check=True)[0] == "alice: job aaaaaaaa would be stopped"
    refused = filters.stop_lines({"error": "student alice has no running job"}, "alice")
    assert refused == ["alice: student alice has no running job; nothing was changed"]


def test_handout_row_finds_the_students_line_by_its_first_field():
    text = (
        "name,full_name,vhost,user,password,head_host,port\n"
        '"bob","alice","bob","bob","pw1","head","5671"\n'
        '"alice","Alice L","alice","alice","pw2","head","5671"\n'
    )
    header, line = handout.handout_row(text, "alice")
    assert header.startswith("name,") and '"pw2"' in line
    assert handout.handout_row(text, "carol") is None
    assert handout.handout_row("", "alice") is None
