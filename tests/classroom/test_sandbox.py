"""Students' own modules on the provisioned classroom: the answer, the
sandbox's isolation and limits, bad modules, and the role's checks.

Alice runs examples/wordcount_module.py on the 45 MB corpus (= grep, every
Pi taking part); then one attack per job, each refused or limited with its
reason, while bob's built-in job runs exact and no worker restarts; then bad
modules, each one clear message. The unit is checked with
``systemd-analyze security``; the Pi OS memory-cgroup step on a test file.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
from support import jobs, nodes

EXAMPLE = nodes.REPO / "examples" / "wordcount_module.py"
DATA = nodes.REPO / "data" / "tinyshakespeare.txt"
COPIES = 40
pytestmark = [pytest.mark.classroom, pytest.mark.timeout(1200)]

ATTACKS = r"""
import os, socket, subprocess, time

HEAD = "{head}"

def add_arguments(parser):
    parser.add_argument("attack")

def params(args):
    return {{"attack": args.attack}}

def split(args, params, shards):
    return [b"x"]

def run(body, params):
    attack = params["attack"]
    if attack == "read-config":
        return open("/etc/pimq/worker.yaml").read()
    if attack in ("amqp", "management"):
        port = 5672 if attack == "amqp" else 15672
        socket.create_connection((HEAD, port), timeout=3)
    if attack == "write-state":
        open("/var/lib/pimq/planted", "w").write("x")
    if attack == "write-etc":
        open("/etc/planted", "w").write("x")
    if attack == "fork-bomb":
        while True:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
    if attack == "allocate":
        return len(bytearray(2 << 30))
    if attack == "endless":
        while True:
            pass
    if attack == "background":
        subprocess.Popen(["sleep", "4242"], start_new_session=True)
        return "left one behind"
    return "nothing happened"

def join(results, params):
    return results[0]
"""

#: attack -> what the student must read in the error
REFUSED = {
    "read-config": "PermissionError: [Errno 13] Permission denied: '/etc/pimq/worker.yaml'",
    "amqp": "[Errno 97] Address family not supported by protocol",
    "management": "[Errno 97] Address family not supported by protocol",
    "write-state": "PermissionError: [Errno 13] Permission denied: '/var/lib/pimq/planted'",
    "write-etc": "OSError: [Errno 30] Read-only file system: '/etc/planted'",
    "fork-bomb": "task limit 32 processes and threads reached",
    "allocate": "memory limit 512 MiB exceeded (MemoryError)",
    "endless": "time limit 3 s exceeded",
}

BAD = {
    "syntax.py": ("def run(body, params):\n    return (\n", 2, "syntax.py, line 2: SyntaxError"),
    "norun.py": (
        "def split(a, p, n):\n    return [b'x']\ndef join(r, p):\n    return r\n",
        2,
        "norun.py, line 1: the module defines no run()",
    ),
    "raises.py": (
        "def split(a, p, n):\n    return [b'x']\n\ndef run(body, params):\n"
        "    return {}['missing']\n\ndef join(r, p):\n    return r\n",
        1,
        "raises.py, line 5, in run: KeyError: 'missing'",
    ),
    "notjson.py": (
        "def split(a, p, n):\n    return [b'x']\ndef run(body, params):\n    return {1, 2}\n"
        "def join(r, p):\n    return r\n",
        1,
        "run() returned a result that is not JSON: Object of type set is not JSON serializable",
    ),
    "huge.py": (
        "def split(a, p, n):\n    return [b'x']\ndef run(body, params):\n"
        "    return 'x' * (20 << 20)\ndef join(r, p):\n    return r\n",
        1,
        "run() returned a result of 20.0 MiB, over the limit of 16.0 MiB",
    ),
    "pionly.py": (  # imports on the head (pimq is there), not in the sandbox
        "import pimq.split\ndef split(a, p, n):\n    return [b'x']\n"
        "def run(body, params):\n    return 1\ndef join(r, p):\n    return r\n",
        1,
        "importing the module failed: pionly.py, line 1, in <module>: "
        "ModuleNotFoundError: No module named 'pimq'",
    ),
}


def put(room: nodes.Room, user: str, name: str, data: bytes) -> None:
    ssh = ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS, f"{user}@{room.ips[room.head]}"]
    subprocess.run([*ssh, f"cat > {shlex.quote(name)}"], input=data, check=True, timeout=120)


def pimq(room: nodes.Room, user: str, args: str, timeout: float = 600):
    return nodes.ssh(room, user, f"pimq run {args}", check=False, timeout=timeout)


def restarts(room: nodes.Room) -> dict[str, str]:
    return {w: jobs.worker_props(w, "NRestarts")["NRestarts"] for w in room.workers}


def task_depths(room: nodes.Room, user: str) -> int:
    """Shards waiting in the student's ``pimq.tasks``."""
    out = nodes.ssh(room, user, "pimq status --json").stdout
    rows = [q for q in json.loads(out)["queues"] if q.get("queue") == "pimq.tasks"]
    assert rows, out
    return int(rows[0]["messages"] or 0)


@pytest.fixture(scope="module")
def corpus(room: nodes.Room, converged) -> int:
    """The corpus and the example module in alice's home; grep's count of `more`."""
    text = DATA.read_bytes() * COPIES
    grep = subprocess.run(
        ["grep", "-ow", "more"], input=text, capture_output=True, env={"LC_ALL": "C"}
    )
    put(room, "alice", "corpus.txt", text)
    put(room, "alice", "wordcount_module.py", EXAMPLE.read_bytes())
    put(room, "bob", "corpus.txt", text)
    return len(grep.stdout.splitlines())


def test_a_student_module_equals_grep_on_every_pi(room: nodes.Room, corpus: int) -> None:
    proc = pimq(room, "alice", "./wordcount_module.py corpus.txt --word more --json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["result"] == corpus
    assert set(doc["workers"]) == set(room.workers)
    assert sum(doc["workers"].values()) == doc["shards"]
    # the module's code is in alice's store on every Pi that ran it, pimq's own
    for worker in room.workers:
        listing = nodes.on_node(worker, "stat -c '%U %a %n' /var/lib/pimq/store/alice/code/*.py")
        assert listing.stdout.startswith("pimq 600 "), listing.stdout


def test_attacks_are_refused_or_limited_and_others_run_exact(room: nodes.Room, corpus) -> None:
    before = restarts(room)
    put(room, "alice", "attacks.py", ATTACKS.format(head=room.ips[room.head]).encode())
    bob = subprocess.Popen(
        ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS, f"bob@{room.ips[room.head]}",
         "pimq run wordcount --word more corpus.txt --json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = {}
    for attack, reason in REFUSED.items():
        proc = pimq(room, "alice", f"./attacks.py {attack} --shard-timeout 3 --shards 1")
        seen[attack] = (proc.returncode, proc.stderr)
        assert proc.returncode == 1 and reason in proc.stderr, (attack, proc.stderr)
    proc = pimq(room, "alice", "./attacks.py background --shards 1")
    assert proc.returncode == 0 and proc.stdout.strip() == "left one behind", proc.stderr
    out, err = bob.communicate(timeout=600)
    assert bob.returncode == 0, err
    assert json.loads(out)["result"] == corpus
    # nothing outlives the job: the background process is gone with its sandbox
    for worker in room.workers:
        nodes.wait_for(
            lambda w=worker: (
                nodes.on_node(w, "pgrep -f '[s]leep 4242'", check=False).returncode == 1
            ),
            timeout=20,
            what=f"no process left behind on {worker}",
        )
        planted = nodes.on_node(worker, "ls /var/lib/pimq/planted /etc/planted", check=False)
        assert planted.returncode != 0
    assert restarts(room) == before
    assert task_depths(room, "alice") == 0


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_module_is_one_clear_message(room: nodes.Room, corpus, name: str) -> None:
    source, code, message = BAD[name]
    put(room, "alice", name, source.encode())
    proc = pimq(room, "alice", f"./{name} --shards 2")
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr, proc.stderr
    if code == 2:
        assert proc.stderr.count("\n") == 1  # one line, nothing queued
    assert task_depths(room, "alice") == 0


def test_the_sandbox_unit_passes_systemd_analyze_security(room: nodes.Room, converged) -> None:
    worker = room.workers[0]
    out = nodes.on_node(worker, "systemd-analyze security --no-pager pimq-sandbox@check.service")
    overall = [line for line in out.stdout.splitlines() if "Overall exposure level" in line]
    assert overall, out.stdout
    exposure = float(overall[0].split("level for")[1].split(":")[1].split()[0])
    assert exposure <= 1.0 and "SAFE" in overall[0], overall[0]  # 0.4 in the classroom
    socket = nodes.on_node(worker, "stat -c '%U %G %a' /run/pimq-sandbox/sandbox.sock")
    assert socket.stdout.strip() == "root pimq 660"


def test_the_memory_cgroup_step_edits_the_boot_command_line(room: nodes.Room, tmp_path):
    worker = room.workers[0]
    line = "console=serial0,115200 console=tty1 root=PARTUUID=abc-02 rootfstype=ext4 fsck.repair=yes rootwait cfg80211.ieee80211_regdom=GB"  # noqa: E501
    nodes.on_node(
        worker,
        "rm -rf /tmp/cgtest && mkdir /tmp/cgtest"
        f" && printf '%s\\n' '{line}' > /tmp/cgtest/cmdline.txt"
        " && echo 'cpuset cpu io pids' > /tmp/cgtest/cgroup.controllers",
    )
    extra = {
        "cgroup_test_host": worker,
        "pimq_worker_cgroup_controllers": "/tmp/cgtest/cgroup.controllers",
        "pimq_worker_cgroup_v1_memory": "/tmp/cgtest/no-v1-memory",
        "pimq_worker_cmdline_files": [
            "/tmp/cgtest/firmware-cmdline.txt",
            "/tmp/cgtest/cmdline.txt",
        ],
        "pimq_worker_cgroup_reboot": False,
    }
    book = "../tests/classroom/playbooks/cgroup_cmdline.yml"
    first = nodes.playbook(book, extra_vars=extra, tmp_dir=tmp_path)
    assert first.rc == 0, first.tail()
    assert first.total("changed") == 1
    assert "the reboot is deferred" in first.output
    text = nodes.on_node(worker, "cat /tmp/cgtest/cmdline.txt").stdout
    assert text == f"{line} cgroup_enable=memory\n"
    second = nodes.playbook(book, extra_vars=extra, tmp_dir=tmp_path)
    assert second.rc == 0 and second.total("changed") == 0, second.tail()
    # with the controller present, nothing is touched
    nodes.on_node(worker, "echo 'cpuset cpu io memory pids' > /tmp/cgtest/cgroup.controllers")
    nodes.on_node(worker, f"printf '%s\\n' '{line}' > /tmp/cgtest/cmdline.txt")
    third = nodes.playbook(book, extra_vars=extra, tmp_dir=tmp_path)
    assert third.rc == 0 and third.total("changed") == 0, third.tail()
    assert nodes.on_node(worker, "cat /tmp/cgtest/cmdline.txt").stdout == f"{line}\n"
