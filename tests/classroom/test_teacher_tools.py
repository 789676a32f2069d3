"""The teacher's tools on the simulated classroom, through their make targets:
stop a student's running job (their `pimq run` exits saying so, the workers stop
its shards), purge a student's pimq.dead on every broker (counted), reset a
student's password (the old one refused by the brokers and by ssh, the new one
working everywhere), and a removed student's home archived before it goes."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pika
import pika.exceptions as px
import pytest
from support import jobs, nodes
from support.students import Student, password_ssh

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(2400)]

# Students no other classroom test uses for the same thing, and one the roster
# does not hold (added and removed here).
STOPPED, DEAD, RESET, LEAVER = "dave", "erin", "heidi", "oscar"
ARCHIVE = "/var/lib/pimq-archive"  # pimq_head_archive_dir


def make(target: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``make TARGET ARGS`` on this room (its inventory), output captured."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    argv = ["make", "--no-print-directory", target, f"INVENTORY={nodes.INVENTORY}", *args]
    return subprocess.run(
        argv, cwd=nodes.REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def out(proc: subprocess.CompletedProcess[str]) -> str:
    """Its output, every run of white space one space (Ansible folds long messages)."""
    return " ".join((proc.stdout + proc.stderr).split())


def queues(room: nodes.Room, student: str, node: str | None = None) -> dict[str, list[int]]:
    """{queue: [messages ready, unacked, consumers]} of a student's vhost on a broker."""
    text = nodes.on_node(
        node or room.head,
        ["rabbitmqctl", "-q", "list_queues", "-p", student, "--no-table-headers",
         "name", "messages_ready", "messages_unacknowledged", "consumers"],
    ).stdout  # fmt: skip
    rows = [line.split() for line in text.splitlines() if line.strip()]
    return {r[0]: [int(x) for x in r[1:]] for r in rows if len(r) == 4}


def result_queues(room: nodes.Room, student: str) -> set[str]:
    return {q[len("pimq.result.") :] for q in queues(room, student) if q.startswith("pimq.result.")}


def start_sleeper(room: nodes.Room, student: str) -> tuple[jobs.Job, str]:
    """A long job (4 shards of 10 characters at 30 s each: 300 s a shard) and its id,
    once its shards are running on the workers."""
    before = result_queues(room, student)
    job = jobs.start(room, student, "sleep", "x" * 10, "--per-char", "30", "--shards", "4")
    new = nodes.wait_for(lambda: result_queues(room, student) - before, 60, what="its result queue")
    (job_id,) = new
    nodes.wait_for(
        lambda: queues(room, student).get("pimq.tasks", [0, 0, 0])[1] > 0,
        60,
        what="its shards delivered to the workers",
    )
    return job, job_id


def worker_says(room: nodes.Room, since: str, text: str) -> list[str]:
    lines = []
    for node in room.workers:
        log = nodes.on_node(
            node, ["journalctl", "-u", "pimq-worker", "--since", since, "--no-pager", "-o", "cat"]
        ).stdout
        lines += [line for line in log.splitlines() if text in line]
    return lines


def test_stop_job_stops_one_job_then_all_and_the_students_pimq_run_says_so(converged, room):
    since = nodes.on_node(room.head, ["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    first, first_id = start_sleeper(room, STOPPED)
    second, second_id = start_sleeper(room, STOPPED)
    try:
        check = make("stop-job", f"STUDENT={STOPPED}", f"JOB={first_id}", "ANSIBLE_ARGS=--check")
        assert check.returncode == 0, out(check)[-3000:]
        assert f"job {first_id} would be stopped" in out(check)
        time.sleep(2)
        assert first.proc.poll() is None, "--check stopped the job"

        one = make("stop-job", f"STUDENT={STOPPED}", f"JOB={first_id}")
        assert one.returncode == 0, out(one)[-3000:]
        assert f"{STOPPED}: job {first_id} stopped: the workers drop its shards" in out(one)
        first.wait(timeout=60)
        assert first.rc == 5, (first.rc, first.err)
        assert f"job {first_id} was stopped by the teacher" in first.err
        assert second.proc.poll() is None, "stopping one job stopped the other"
        assert second_id in result_queues(room, STOPPED)

        every = make("stop-job", f"STUDENT={STOPPED}")
        assert every.returncode == 0, out(every)[-3000:]
        assert f"job {second_id} stopped" in out(every)
        second.wait(timeout=60)
        assert second.rc == 5 and "stopped by the teacher" in second.err, second.err

        # Every worker dropped the jobs' shards, the running ones killed: nothing of
        # them is held or queued (each shard would have run 300 s).
        nodes.wait_for(
            lambda: queues(room, STOPPED).get("pimq.tasks", [1, 1])[:2] == [0, 0],
            60,
            what="no shard of the stopped jobs left",
        )
        for job_id in (first_id, second_id):
            said = worker_says(room, since, f"job {job_id} stopped")
            assert said, f"no worker logged stopping job {job_id}"
        running = [
            int(m.group(1))
            for job_id in (first_id, second_id)
            for line in worker_says(room, since, f"job {job_id} stopped")
            if (m := re.search(r"stopped (\d+) running", line))
        ]
        assert sum(running) >= 1, "no running shard was stopped"
        assert result_queues(room, STOPPED) == set()

        # Nothing running, or no such student: a clear message, a failure, no change.
        none = make("stop-job", f"STUDENT={STOPPED}")
        assert none.returncode != 0
        assert f"student {STOPPED} has no running job; nothing was changed" in out(none)
        unknown = make("stop-job", "STUDENT=nosuchstudent")
        assert unknown.returncode != 0
        assert "no student named nosuchstudent in the roster" in out(unknown)
        assert "nothing was changed" in out(unknown)
    finally:
        for job in (first, second):
            if job.proc.poll() is None:
                job.proc.kill()


def send_dead(room: nodes.Room, student: str, count: int, host: str | None = None) -> None:
    """``count`` messages into the student's pimq.dead (as the student, on a broker)."""
    where = f" --host {host}" if host else ""
    for i in range(count):
        Student(room, student).ssh(f"pimq send pimq.dead dead-{i} --durable{where}")


def test_purge_dead_purges_every_broker_and_counts(converged, room):
    other = room.workers[0] if room.workers[0] != room.head else room.workers[-1]
    before = admin_rights(room, DEAD)
    # On one broker the admin has no rights on the vhost: the tool lends it what
    # the purge needs, and takes it back.
    nodes.on_node(other, ["rabbitmqctl", "-q", "clear_permissions", "-p", DEAD, "pimq-admin"])
    try:
        purge_dead_on(room, other)
    finally:
        nodes.on_node(
            other,
            ["rabbitmqctl", "-q", "set_permissions", "-p", DEAD, "pimq-admin", ".*", ".*", ".*"],
        )
    assert admin_rights(room, DEAD) == before


def purge_dead_on(room: nodes.Room, other: str) -> None:
    lacking = admin_rights(room, DEAD)[other]
    assert lacking == []
    send_dead(room, DEAD, 3)
    send_dead(room, DEAD, 2, host=other)
    assert queues(room, DEAD)["pimq.dead"][0] == 3
    assert queues(room, DEAD, other)["pimq.dead"][0] == 2

    check = make("purge-dead", f"STUDENT={DEAD}", "ANSIBLE_ARGS=--check")
    assert check.returncode == 0, out(check)[-3000:]
    assert "5 message(s) would be removed" in out(check), out(check)[-3000:]
    assert queues(room, DEAD)["pimq.dead"][0] == 3

    purge = make("purge-dead", f"STUDENT={DEAD}")
    assert purge.returncode == 0, out(purge)[-3000:]
    text = out(purge)
    assert f"pimq.dead of {DEAD} on {room.head}: 3 message(s) removed" in text, text[-3000:]
    assert f"pimq.dead of {DEAD} on {other}: 2 message(s) removed" in text
    assert f"5 message(s) removed on {len(room.nodes)} broker(s)" in text
    assert queues(room, DEAD)["pimq.dead"][0] == 0
    assert queues(room, DEAD, other)["pimq.dead"][0] == 0

    again = make("purge-dead", f"STUDENT={DEAD}")
    assert again.returncode == 0
    assert f"0 message(s) removed on {len(room.nodes)} broker(s)" in out(again)
    assert re.search(r"changed=[1-9]", out(again)) is None, out(again)[-2000:]
    assert admin_rights(room, DEAD)[other] == [], "the rights lent were not taken back"


def admin_rights(room: nodes.Room, student: str) -> dict[str, list[dict]]:
    return {
        node: [
            p
            for p in nodes.broker_definitions(node)["permissions"]
            if p["vhost"] == student and p["user"] == "pimq-admin"
        ]
        for node in room.nodes
    }


def broker_login(room: nodes.Room, node: str, user: str, password: str) -> str:
    """ "ok" or the error's type, connecting to a broker over AMQPS as ``user``."""
    params = pika.ConnectionParameters(
        host=room.ips[node], port=nodes.AMQPS_PORT, virtual_host=user,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1,
        ssl_options=nodes.amqps_options(room.ips[node]),
    )  # fmt: skip
    try:
        pika.BlockingConnection(params).close()
    except px.AMQPError as exc:
        return type(exc).__name__
    return "ok"


def test_reset_password_replaces_it_everywhere(converged, room, creds, tmp_path):
    old = creds.students[RESET]
    file = nodes.INVENTORY / "credentials" / "students" / f"{RESET}.txt"
    handout = nodes.INVENTORY / "credentials" / "handout.csv.txt"
    try:
        check = make("reset-password", f"STUDENT={RESET}", "ANSIBLE_ARGS=--check")
        assert check.returncode == 0, out(check)[-3000:]
        assert file.read_text().strip() == old, "--check replaced the password"

        reset = make("reset-password", f"STUDENT={RESET}")
        assert reset.returncode == 0, out(reset)[-3000:]
        new = file.read_text().strip()
        assert new != old and len(new) == len(old)
        assert oct(file.stat().st_mode & 0o777) == "0o600"
        # The handout line is printed (by the make target, not by Ansible) and written.
        ansible_part, _, printed = reset.stdout.partition(f"{RESET}'s new handout line")
        assert f'"{RESET}",' in printed and f'"{new}"' in printed, printed
        assert nodes.find_secrets(ansible_part + reset.stderr, [new, old]) == []
        assert f'"{new}"' in handout.read_text() and f'"{old}"' not in handout.read_text()

        for node in room.nodes:
            assert broker_login(room, node, RESET, old) == "ProbableAuthenticationError", node
            assert broker_login(room, node, RESET, new) == "ok", node
        assert password_ssh(room, RESET, old, tmp_path).returncode != 0
        login = password_ssh(room, RESET, new, tmp_path)
        assert login.returncode == 0 and login.stdout.strip() == RESET, login.stderr
        # Their own config file on the head has it: their tools work as before.
        assert Student(room, RESET).try_vhost()["consumed"] == f"hello {RESET}"
    finally:
        # Put the room back as provisioned (the handout's password everywhere).
        file.write_text(old + "\n")
        back = nodes.playbook(
            "site.yml", "--tags", "students,head",
            extra_vars={"pimq_head_reset_passwords": [RESET]},
        )  # fmt: skip
        assert back.rc == 0, back.tail()
    assert password_ssh(room, RESET, old, tmp_path).returncode == 0


def roster_with(room: nodes.Room, name: str, state: str) -> list[dict]:
    key = room.roster[0].get("ssh_key")
    return [*room.roster, {"name": name, "full_name": name.title(), "ssh_key": key, "state": state}]


def archives(room: nodes.Room, name: str) -> list[str]:
    found = nodes.on_node(room.head, f"ls -1 {ARCHIVE}/{name}-*.tar.gz 2>/dev/null || true")
    return found.stdout.split()


def test_a_removed_students_home_is_archived_before_it_goes(converged, room):
    tags = ("--tags", "students,head")
    absent = {"pimq_students": roster_with(room, LEAVER, "absent")}
    gone = False  # the account removed by the test itself: nothing to put back
    try:
        run = nodes.playbook(
            "site.yml", *tags, extra_vars={"pimq_students": roster_with(room, LEAVER, "present")}
        )
        assert run.rc == 0, run.tail()
        Student(room, LEAVER).ssh(
            "mkdir -p work && echo 'my notes' > work/notes.txt && ln -s /etc/shadow work/shadow"
        )
        # archives of an earlier account of this name (test_accounts removes one): not this one's
        earlier = set(archives(room, LEAVER))

        check = nodes.playbook("site.yml", *tags, "--check", extra_vars=absent)
        assert check.rc == 0, check.tail()
        assert (
            f"account {LEAVER}: home /home/{LEAVER} archived to {ARCHIVE}/{LEAVER}-" in check.output
        )
        assert set(archives(room, LEAVER)) == earlier, "--check archived"
        assert nodes.on_node(room.head, ["id", LEAVER], check=False).returncode == 0

        run = nodes.playbook("site.yml", *tags, extra_vars=absent)
        assert run.rc == 0, run.tail()
        (archive,) = set(archives(room, LEAVER)) - earlier
        assert re.fullmatch(rf"{ARCHIVE}/{LEAVER}-\d{{8}}T\d{{6}}Z\.tar\.gz", archive), archive
        stat = nodes.on_node(room.head, ["stat", "-c", "%U:%G %a", archive, ARCHIVE]).stdout
        assert stat.split("\n")[:2] == ["root:root 600", "root:root 700"], stat
        listing = nodes.on_node(room.head, ["tar", "-tvzf", archive]).stdout
        assert f"{LEAVER}/work/notes.txt" in listing
        assert f"{LEAVER}/.config/pimq/config.yaml" in listing
        link = [line for line in listing.splitlines() if f"{LEAVER}/work/shadow" in line]
        assert link and link[0].startswith("l") and "-> /etc/shadow" in link[0], link
        notes = nodes.on_node(room.head, ["tar", "-xOzf", archive, f"{LEAVER}/work/notes.txt"])
        assert notes.stdout == "my notes\n"
        assert nodes.on_node(room.head, ["id", LEAVER], check=False).returncode != 0
        assert nodes.on_node(room.head, ["test", "-e", f"/home/{LEAVER}"], check=False).returncode

        again = nodes.playbook("site.yml", *tags, extra_vars=absent)
        assert again.rc == 0 and again.total("changed") == 0, again.tail(80)
        assert set(archives(room, LEAVER)) == earlier | {archive}
        gone = True
    finally:
        if not gone:
            run = nodes.playbook("site.yml", *tags, extra_vars=absent)
            assert run.rc == 0, run.tail()
        nodes.on_node(room.head, f"rm -f {ARCHIVE}/{LEAVER}-*.tar.gz")
        Path(nodes.INVENTORY / "credentials" / "students" / f"{LEAVER}.txt").unlink(missing_ok=True)
