"""Secrets audit after a full run: every generated password is only where it is meant to be.

The run: the room's converge of site.yml (at -vvv, ``ps`` sampled on every node and
on this machine: ``converged``, made once per run by the first suite that needed it),
then every student runs a word count at once while two
of them work in an interactive login shell (``ssh -tt``: status, send/receive on the
head's and a buddy Pi's broker, a word count, a pi estimate), ``ps`` sampled again, with
``pimq-worker`` running on every worker Pi. Then, as root on every node
(``docker exec``; the secrets travel on stdin, never in argv), ``fsscan.py`` reads every
regular file of the whole filesystem (all but /proc, /sys, /dev; /dev/shm included),
the rotated logs of /var/log decompressed, every field of every journal entry
(``journalctl -o export``) and every process's environment and argv at that moment.

Needles per password: the password and the HTTP Basic token of ``user:password``.

Allow-list (anything else fails the test):
- a student's password: only ``/home/<student>/.config/pimq/config.yaml`` on the head,
  mode 0600, owner and group the student;
- the ``pimq-worker`` password: only ``/etc/pimq/worker.yaml`` on each worker Pi,
  mode 0640, root:pimq;
- the admin password: nowhere on a node. The roles only hand it to the
  ``pimq_rabbitmq`` module (pipelined, ``no_log``), which logs in over HTTP on
  127.0.0.1 and creates the admin of a fresh broker as a salted hash (through guest's
  API, or else on ``rabbitmqctl``'s stdin);
- on the control machine, only in ``inventory/<room>/credentials/`` (0700, files 0600:
  ``admin.txt``, ``pimq-worker.txt``, ``students/<name>.txt``, ``handout.csv.txt``
  with every student's); the repository (venvs aside), ``~/.ansible`` and this
  session's pytest temp are scanned too.

RabbitMQ's database (mnesia, ``/var/lib/rabbitmq/mnesia``) is scanned like any other
file: it must hold no plaintext. The broker keeps salted hashes there; to show the
scan sees that database, each broker user's salted hash (from ``rabbitmqctl
export_definitions``, decoded to its raw bytes) is searched under /var/lib/rabbitmq
and the files holding it are reported (a note, not a failure).

Not covered: a secret that is written and removed within a run (a module's temporary
file beside a config, renamed into place; Ansible's remote temp, removed at the end of
each task), memory, and free disk blocks.

In ``make chaos`` this file runs after the faults, bad input, load and misuse tests
(pytest takes the files in name order), so the scan also sees what those left behind.
About 50 s after the converge on the 4-node room, so ``make chaos-ci`` runs it too.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import shlex
import stat
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import figures
import fsscan
import pytest
from support import jobs, nodes
from support.provision import Provisioning

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

SECTION = "Secrets audit after a full run (root scan of every node; control machine)"
CLASSES = ("student", "worker", "admin")
WORKER_USER, ADMIN_USER = "pimq-worker", "pimq-admin"
SKIP = ("/proc", "/sys", "/dev")
ROOTS = ("/", "/dev/shm")
INTERACTIVE = ("alice", "bob")
JOB_TIMEOUT = 300  # s; a 16-shard word count of the 5.6 MB corpus takes seconds
NOTE = """
Allow-list: a student's password only in `/home/<student>/.config/pimq/config.yaml` on
the head (0600, the student's); the `pimq-worker` password only in `/etc/pimq/worker.yaml`
on each worker Pi (0640 root:pimq); the admin password on no node (the roles hand it only
to the `pimq_rabbitmq` module, pipelined and `no_log`: it logs in over HTTP on 127.0.0.1
and creates the admin of a fresh broker as a salted hash through guest's API, or else
on `rabbitmqctl`'s stdin); on the control
machine only in `inventory/<room>/credentials/` (0700; files 0600: `admin.txt`,
`pimq-worker.txt`, `students/<name>.txt`, `handout.csv.txt` with every student's).
Searched for: each password and the HTTP Basic token of `user:password`. Files: every
regular file of each node, as root (all but /proc, /sys, /dev; /dev/shm, /run, /tmp
included), rotated logs decompressed; on the control machine the repository (venvs
aside), `~/.ansible` and the session's pytest temp. Journal: every field of every entry
(`journalctl -o export`). Histories: every shell/REPL history file (alice and bob typed
their commands in a login shell on a terminal). argv samples: `ps` every 0.2 s on every
node and the control machine through the converge (at -vvv) and the students' jobs;
"process env + argv now": every process's environ and cmdline at the scan (the workers
running). RabbitMQ's database (mnesia) is scanned like any file and holds no plaintext:
the broker keeps a salted SHA-256 hash per user; the last column counts the users whose
hash bytes the scan found there, so it does read that database. Not covered: a secret
written and removed within the run (the 0600 temporary file `pimq_files` and
`pimq_accounts` write beside a config before renaming it into place), memory, free
disk blocks.
"""
SESSION = """pimq status
pimq send audit hello
pimq receive audit --count 1 --timeout 20
pimq queue delete audit
pimq send audit hello --host {buddy}
pimq receive audit --count 1 --timeout 20 --host {buddy}
pimq queue delete audit --host {buddy}
pimq run wordcount --word {word} {corpus} --shards 8
pimq run pi --samples 200000
exit
"""


def variants(creds: nodes.Credentials) -> list[tuple[str, str]]:
    """(label, text) for each password and its HTTP Basic token (``user:password``)."""
    owners = [(f"student:{n}", n, p) for n, p in creds.students.items()]
    owners += [("worker", WORKER_USER, creds.worker), ("admin", ADMIN_USER, creds.admin)]
    out = []
    for label, user, password in owners:
        out += [
            (label, password),
            (label, base64.b64encode(f"{user}:{password}".encode()).decode()),
        ]
    return out


def needle_list(creds: nodes.Credentials) -> list[list[str]]:
    """fsscan's needles: [label, base64 of the text]."""
    return [[label, base64.b64encode(text.encode()).decode()] for label, text in variants(creds)]


def secrets_of(creds: nodes.Credentials, cls: str) -> list[str]:
    """Every variant of every password of a class (student, worker, admin)."""
    return [text for label, text in variants(creds) if secret_class(label) == cls]


def secret_class(label: str) -> str:
    return label.split(":")[0]


def allowed(room: nodes.Room, node: str, label: str, path: str) -> tuple[str, str, str] | None:
    """(mode, owner, group) a file must have to hold this secret, None if it must not."""
    if label.startswith("student:") and node == room.head:
        name = label.split(":", 1)[1]
        if path == f"/home/{name}/.config/pimq/config.yaml":
            return ("600", name, name)
    if label == "worker" and node in room.workers and path == "/etc/pimq/worker.yaml":
        return ("640", "root", "pimq")
    return None


def expected_labels(room: nodes.Room, node: str) -> set[str]:
    """Secrets a node must hold (each in its one allowed file): every student of the
    roster on the head, the worker's on every worker Pi. A student who left the roster
    without ``state: absent`` keeps an account and a config file: allowed, not required."""
    labels = {f"student:{n}" for n in jobs.STUDENTS} if node == room.head else set()
    return labels | ({"worker"} if node in room.workers else set())


def scan_node(node: str, request: dict) -> dict:
    source = Path(fsscan.__file__).read_text()
    proc = nodes.on_node(node, ["python3", "-c", source], input=json.dumps(request), timeout=900)
    return json.loads(proc.stdout)


def interactive(room: nodes.Room, name: str, buddy: str, corpus: str) -> subprocess.Popen:
    """A login shell on a terminal (``ssh -tt``), commands typed on it: bash keeps a history."""
    argv = ["ssh", "-tt", "-i", str(room.key), *nodes.SSH_OPTIONS, f"{name}@{room.ips[room.head]}"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    proc.stdin.write(SESSION.format(buddy=buddy, word="more", corpus=shlex.quote(corpus)))
    proc.stdin.flush()
    return proc


def students_work(room: nodes.Room, corpus: tuple[str, int]) -> tuple[nodes.PsSampler, list[str]]:
    """Every student's word count at once, two interactive sessions beside them, ps sampled."""
    path, expected = corpus
    problems = []
    with nodes.PsSampler(room.nodes) as sampler:
        shells = {n: interactive(room, n, room.workers[0], path) for n in INTERACTIVE}
        time.sleep(2)  # stay under sshd's MaxStartups (10 unauthenticated connections)
        running = [jobs.wordcount(room, n, path, "more", shards=16) for n in jobs.STUDENTS]
        for job in running:
            try:
                job.wait(timeout=JOB_TIMEOUT)
            except subprocess.TimeoutExpired:
                job.proc.kill()
                problems.append(f"{job.student}: word count still running after {JOB_TIMEOUT} s")
                continue
            if job.rc != 0 or job.doc["result"] != expected:
                problems.append(f"{job.student}: job rc={job.rc} {job.doc} {job.err[-300:]}")
        for name, shell in shells.items():
            try:
                out, _ = shell.communicate(timeout=JOB_TIMEOUT)
            except subprocess.TimeoutExpired:
                shell.kill()
                out, _ = shell.communicate()
            if shell.returncode != 0 or f"occurs {expected} times" not in out:
                problems.append(f"{name}: interactive session rc={shell.returncode}:\n{out[-800:]}")
    return sampler, problems


def argv_hits(samplers, creds: nodes.Credentials, cls: str) -> Counter:
    secrets = secrets_of(creds, cls)
    hits = Counter()
    for sampler in samplers:
        for line in sampler.leaks(secrets):
            hits[line.split(":", 1)[0]] += 1
    return hits


def control_expected(creds: nodes.Credentials) -> dict[str, set[str]]:
    """Relative path in the credentials folder -> labels it holds."""
    files = {"admin.txt": {"admin"}, "pimq-worker.txt": {"worker"}}
    files["handout.csv.txt"] = {f"student:{n}" for n in creds.students}
    for name in creds.students:
        files[f"students/{name}.txt"] = {f"student:{name}"}
    return files


def scan_control(needles, tmp_root: Path) -> dict:
    """The repository (venvs aside), the credentials folder (if the inventory is elsewhere),
    ~/.ansible (Ansible's local temp) and this session's pytest temp."""
    skip = [str(p) for p in nodes.REPO.glob(".venv*")]
    roots = [nodes.REPO, Path.home() / ".ansible", tmp_root]
    if not nodes.INVENTORY.is_relative_to(nodes.REPO):
        roots.append(nodes.INVENTORY / "credentials")
    return fsscan.scan(needles, [str(r) for r in roots if r.is_dir()], skip)


def hash_needles(node: str) -> list[list[str]]:
    users = nodes.broker_definitions(node)["users"]
    return [
        [u["name"], base64.b64encode(base64.b64decode(u["password_hash"])).decode()]
        for u in users
        if u.get("password_hash")
    ]


def user_class(name: str) -> str:
    return {WORKER_USER: "worker", ADMIN_USER: "admin"}.get(name, "student")


def node_rows(room, node, report, hashes, broker_users, argv, samples) -> list[str]:
    """Figures rows of one node (one per secret class); what breaks the allow-list."""
    problems, found = [], set()
    expect = Counter(secret_class(x) for x in expected_labels(room, node))
    users = {u: user_class(u) for u, _ in broker_users}
    hashed = {h["path"]: h["labels"] for h in hashes["hits"]}
    rotated = [p for p in report["var_log"] if os.path.splitext(p)[1] in fsscan.COMPRESSED]
    if report["journal_rc"] != 0 or report["journal_entries"] < 100:
        problems.append(f"{node}: journal not read ({report['journal_entries']} entries)")
    if samples[node] < 20:
        problems.append(f"{node}: only {samples[node]} ps samples")
    for cls in CLASSES:
        hits = [h for h in report["hits"] if any(secret_class(x) == cls for x in h["labels"])]
        ok, right, elsewhere = 0, 0, set()
        for h in hits:
            for label in (x for x in h["labels"] if secret_class(x) == cls):
                want = allowed(room, node, label, h["path"])
                have = (h["mode"], h["owner"], h["group"])
                if want is None:
                    elsewhere.add(f"{h['path']} ({h['mode']} {h['owner']}:{h['group']})")
                    continue
                ok += 1
                found.add(label)
                right += have == want
                if have != want:
                    problems.append(f"{node}: {h['path']} is {have}, want {want}")
        journal = sum(v for k, v in report["journal_hits"].items() if secret_class(k) == cls)
        var_log = [h["path"] for h in hits if h["path"].startswith("/var/log/")]
        history = [h["path"] for h in hits if fsscan.is_history(h["path"])]
        procs = [
            f"{p['comm']}[{p['pid']}] {p['where']}"
            for p in report["process_hits"]
            if any(secret_class(x) == cls for x in p["labels"])
        ]
        of_class = {u for u, c in users.items() if c == cls}
        in_db = {u for labels in hashed.values() for u in labels if u in of_class}
        db_files = sorted({Path(p).name for p, labels in hashed.items() if set(labels) & of_class})
        figures.add(
            SECTION,
            f"{node}: {cls}",
            **{
                "files holding it": len(hits),
                "allowed (expected)": f"{ok} ({expect[cls]})",
                "owner+mode right": right,
                "elsewhere": "; ".join(sorted(elsewhere)) or "none",
                "journal entries": f"{journal} of {report['journal_entries']}",
                "/var/log files (rotated)": (
                    f"{len(var_log)} of {len(report['var_log'])} ({len(rotated)})"
                ),
                "shell histories": f"{len(history)} of {len(report['histories'])}",
                "argv samples": f"{argv[cls][node]} of {samples[node]}",
                "process env + argv now": f"{len(procs)} of {report['processes']}",
                "Ansible output lines": "-",
                "RabbitMQ DB (mnesia): salted hashes, plaintext": (
                    f"{len(in_db)}/{len(of_class)} in {', '.join(db_files) or '-'}, "
                    f"plaintext {sum(1 for h in hits if '/mnesia/' in h['path'])}"
                ),
            },
        )
        if elsewhere:
            problems.append(f"{node}: {cls} password outside the allow-list: {sorted(elsewhere)}")
        if journal or var_log or history or procs or argv[cls][node]:
            problems.append(
                f"{node}: {cls} password in journal={journal} /var/log={var_log} "
                f"histories={history} processes={procs} argv={argv[cls][node]}"
            )
    missing = expected_labels(room, node) - found
    if missing:
        problems.append(f"{node}: not in their allowed file: {sorted(missing)}")
    if node == room.head:
        left = {f"/home/{n}/.bash_history" for n in INTERACTIVE} - set(report["histories"])
        if left:
            problems.append(f"{node}: the interactive sessions left no history: {sorted(left)}")
    return problems


def control_rows(creds, control, ansible_output, argv, samples) -> list[str]:
    """Figures rows of the control machine: the credentials folder and nowhere else."""
    problems = []
    base = nodes.INVENTORY / "credentials"
    meant = control_expected(creds)
    me = getpass.getuser()
    for d in (base, base / "students"):
        if stat.S_IMODE(d.stat().st_mode) != 0o700:
            problems.append(f"control: {d} is {oct(stat.S_IMODE(d.stat().st_mode))}, want 0o700")
    lines = len(ansible_output.splitlines())
    if lines < 1000:
        problems.append(f"the converge's output is not a -vvv one ({lines} lines)")
    for cls in CLASSES:
        ok, right, elsewhere, files = 0, 0, [], 0
        for h in control["hits"]:
            labels = {x for x in h["labels"] if secret_class(x) == cls}
            if not labels:
                continue
            files += 1
            rel = os.path.relpath(h["path"], base)
            if rel not in meant or not labels <= meant[rel]:
                elsewhere.append(h["path"])
                continue
            ok += 1
            right += (h["mode"], h["owner"]) == ("600", me)
            if (h["mode"], h["owner"]) != ("600", me):
                problems.append(f"control: {h['path']} is {h['mode']} {h['owner']}, want 600 {me}")
        want = sum(1 for labels in meant.values() if any(secret_class(x) == cls for x in labels))
        in_output = len(nodes.find_secrets(ansible_output, secrets_of(creds, cls)))
        figures.add(
            SECTION,
            f"control: {cls}",
            **{
                "files holding it": files,
                "allowed (expected)": f"{ok} ({want})",
                "owner+mode right": right,
                "elsewhere": "; ".join(elsewhere) or "none",
                "journal entries": "-",
                "/var/log files (rotated)": "-",
                "shell histories": "-",
                "argv samples": f"{argv[cls]['control']} of {samples['control']}",
                "process env + argv now": "-",
                "Ansible output lines": f"{in_output} of {lines}",
                "RabbitMQ DB (mnesia): salted hashes, plaintext": "-",
            },
        )
        if elsewhere:
            problems.append(f"control: {cls} password outside the credentials folder: {elsewhere}")
        if ok != want:
            problems.append(f"control: {cls}: {ok} credential files hold it, expected {want}")
        if in_output or argv[cls]["control"]:
            problems.append(
                f"control: {cls} password in Ansible output ({in_output} lines) "
                f"or argv ({argv[cls]['control']} samples)"
            )
    return problems


def test_secrets_only_where_meant_after_a_full_run(
    room: nodes.Room, converged: Provisioning, corpus, creds, tmp_path_factory
) -> None:
    timings = {}
    start = time.monotonic()
    sampler, problems = students_work(room, corpus)
    timings["students' jobs"] = time.monotonic() - start

    start = time.monotonic()
    needles = needle_list(creds)
    request = {"needles": needles, "roots": list(ROOTS), "skip": list(SKIP), "journal": True}
    broker_users = {n: hash_needles(n) for n in room.nodes}
    with ThreadPoolExecutor(max_workers=2) as pool:
        node_reports = pool.map(lambda n: scan_node(n, request), room.nodes)
        reports = dict(zip(room.nodes, node_reports, strict=True))
        hash_reports = pool.map(
            lambda n: scan_node(n, {"needles": broker_users[n], "roots": ["/var/lib/rabbitmq"]}),
            room.nodes,
        )
        hashes = dict(zip(room.nodes, hash_reports, strict=True))
    timings["node scans"] = time.monotonic() - start
    start = time.monotonic()
    control = scan_control(needles, tmp_path_factory.getbasetemp())
    timings["control scan"] = time.monotonic() - start

    samplers = (converged.sampler, sampler)
    samples = Counter()
    for s in samplers:
        samples.update(s.samples)
    argv = {cls: argv_hits(samplers, creds, cls) for cls in CLASSES}
    for node in room.nodes:
        problems += node_rows(
            room, node, reports[node], hashes[node], broker_users[node], argv, samples
        )
    problems += control_rows(creds, control, converged.first.output, argv, samples)

    scanned = ", ".join(
        f"{n} {r['files']} files ({r['bytes'] >> 20} MiB)" for n, r in reports.items()
    )
    run = (
        f"Run: the converge {'of an earlier suite of this run' if converged.reused else 'made now'}"
        f" ({converged.first.total('changed')} changed, {converged.first.seconds:.0f} s), "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; scanned: {scanned}; control {control['files']} files."
    )
    figures.note(SECTION, NOTE.strip() + "\n\n" + run)
    print("\n" + run)
    assert not problems, "\n".join(problems)
