"""Logging in as the hand-outs do (issue 15): a student types `ssh name@head` and the
password on the handout; sshd allows passwords for pimq's students only, never for
the admin or a service account; a password the student changed survives the next run.

Passwords reach ssh through SSH_ASKPASS (a script that reads a 0600 file), never argv.
"""

from __future__ import annotations

import pytest
from support import nodes
from support.students import password_ssh

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(2400)]
STUDENT = "grace"  # no other classroom test logs in as her


def sshd_allows_passwords(room: nodes.Room, user: str) -> bool:
    """What sshd on the head decides for ``user`` (its effective configuration)."""
    out = nodes.on_node(room.head, f"sshd -T -C user={user},host=pc,addr=192.0.2.1").stdout
    return "passwordauthentication yes" in out.splitlines()


def why_refused(room: nodes.Room, user: str) -> str:
    """What the head knows of a refused login: the account's password status (no
    hash), its groups, and sshd's last lines."""
    return nodes.on_node(
        room.head,
        f"passwd --status {user}; id {user}; journalctl -t sshd --no-pager -o cat -n 15",
        check=False,
    ).stdout


def test_a_student_logs_in_with_the_handouts_password(room, converged, creds, tmp_path):
    login = password_ssh(room, STUDENT, creds.students[STUDENT], tmp_path)
    assert login.returncode == 0, login.stderr + why_refused(room, STUDENT)
    assert login.stdout.strip() == STUDENT
    wrong = password_ssh(room, STUDENT, creds.students[STUDENT] + "x", tmp_path)
    assert wrong.returncode == 255 and "Permission denied" in wrong.stderr, wrong


def test_passwords_are_refused_for_the_admin_and_service_accounts(room, converged, tmp_path):
    admin = "pi"  # the harness's admin (ansible_user), as on a Pi fresh from the imager
    assert sshd_allows_passwords(room, STUDENT)
    for user in (admin, "root", "pimq-worker", "rabbitmq"):
        assert not sshd_allows_passwords(room, user), user
    # The admin really has a password here: sshd still refuses it.
    password = "admin-has-a-password-7Qx"
    before = nodes.on_node(room.head, f"getent shadow {admin} | cut -d: -f2").stdout.strip()
    nodes.on_node(room.head, "chpasswd", input=f"{admin}:{password}\n")
    try:
        refused = password_ssh(room, admin, password, tmp_path)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused
        assert nodes.ssh(room, admin, "id -un").stdout.strip() == admin  # the key still works
    finally:
        nodes.on_node(room.head, ["usermod", "--password", before, admin])


def test_a_password_the_student_changed_survives_the_next_run(
    room, converged, converge_vars, creds, tmp_path
):
    mine = "grace-chose-this-one-42"
    nodes.on_node(room.head, "chpasswd", input=f"{STUDENT}:{mine}\n")  # as `passwd` would
    try:
        run = nodes.playbook("site.yml", "--tags", "head", extra_vars=converge_vars)
        assert run.rc == 0, run.tail()
        assert f"account {STUDENT}: login password set" not in run.output
        assert password_ssh(room, STUDENT, mine, tmp_path).returncode == 0
        handout = password_ssh(room, STUDENT, creds.students[STUDENT], tmp_path)
        assert handout.returncode == 255, handout
    finally:
        nodes.on_node(room.head, "chpasswd", input=f"{STUDENT}:{creds.students[STUDENT]}\n")


def test_an_account_without_a_password_gets_the_handouts(room, converged, converge_vars, creds):
    """A student made while password login was off (or by an earlier pimq) has a locked
    password: the next run sets the handout's, once."""
    nodes.on_node(room.head, f"passwd --delete {STUDENT} && usermod --lock {STUDENT}")
    run = nodes.playbook("site.yml", "--tags", "head", extra_vars=converge_vars)
    assert run.rc == 0, run.tail()
    assert f"account {STUDENT}: login password set" in run.output, run.tail()
    again = nodes.playbook("site.yml", "--tags", "head", extra_vars=converge_vars)
    assert again.rc == 0 and "login password set" not in again.output, again.tail()


def test_the_head_has_what_the_handouts_use(room, converged):
    """ipython3 and tmux (the seed lab), Celery (the broker survey), the examples."""
    out = nodes.ssh(
        room,
        STUDENT,
        "ipython3 --version && tmux -V && python3 -m celery --version"
        " && cat /opt/pimq/examples/wordcount_module.py /opt/pimq/examples/celery/tasks.py"
        " /opt/pimq/examples/tutorials/send.py > /dev/null && echo readable",
    ).stdout.split("\n")
    assert out[0].split(".")[0].isdigit(), out  # ipython3's version, e.g. 8.5.0
    assert out[1].startswith("tmux "), out
    assert out[2].split(" ")[0].count(".") == 2, out  # celery's, e.g. "5.2.6 (dawn-chorus)"
    assert out[3] == "readable", out
