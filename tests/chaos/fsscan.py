"""Which files hold which secret: a plaintext scan of a whole machine, as root.

Runs on a classroom node with the node's own ``python3`` (standard library only):
its source travels as the ``python3 -c`` argument (no secret in it), the request
(the secrets) as JSON on stdin, and the report comes back as JSON on stdout. The
control machine imports it and calls :func:`scan` directly.

Request: ``{"needles": [[label, base64 bytes], ...], "roots": [...], "skip": [...],
"journal": bool}``. A label is what a hit reports (never the secret itself); one
label may have several needles (the password, its HTTP Basic token, ...).

Report: every regular file under ``roots`` (not following symlinks, not entering
``skip``) that holds a needle, with its owner, group and mode; files under
``/var/log`` compressed by logrotate (``.gz``, ``.xz``, ``.bz2``) are searched
decompressed. Shell and REPL histories are listed even when clean. With
``journal``, ``journalctl -o export`` (every field of every entry, not only the
message) is searched too, and every process's ``/proc/PID/environ`` and
``/proc/PID/cmdline`` as they are at the time of the scan.
"""

from __future__ import annotations

import base64
import bz2
import grp
import gzip
import json
import lzma
import os
import pwd
import stat
import subprocess
import sys

CHUNK = 1 << 22
COMPRESSED = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
HISTORIES = {
    ".bash_history", ".sh_history", ".ash_history", ".zsh_history", ".python_history",
    ".mysql_history", ".psql_history", ".sqlite_history", ".node_repl_history",
    ".lesshst", ".viminfo", ".wget-hsts",
}  # fmt: skip


def holds(stream, needles: list[tuple[str, bytes]]) -> set[str]:
    """Labels of the needles found in a binary stream (read in overlapping chunks)."""
    overlap = max(len(n) for _, n in needles) - 1
    found: set[str] = set()
    tail = b""
    while True:
        block = stream.read(CHUNK)
        if not block:
            return found
        data = tail + block
        found.update(label for label, n in needles if label not in found and n in data)
        tail = data[-overlap:] if overlap else b""


def _owner(st: os.stat_result) -> tuple[str, str]:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return user, group


def is_history(path: str) -> bool:
    return os.path.basename(path) in HISTORIES or "/erlang-history/" in path


def scan(needles, roots, skip=(), journal=False) -> dict:
    needles = [(label, base64.b64decode(n)) for label, n in needles]
    skip = {os.path.normpath(s) for s in skip}
    report = {
        "hits": [],  # {path, labels, owner, group, mode}
        "files": 0,
        "bytes": 0,
        "unreadable": [],
        "var_log": [],  # every file under /var/log (the rotated ones included)
        "histories": [],  # every shell/REPL history file, clean or not
    }
    for top in roots:
        for root, dirs, files in os.walk(top, onerror=lambda e: None):
            dirs[:] = sorted(d for d in dirs if os.path.join(root, d) not in skip)
            for name in sorted(files):
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                opener = open
                if path.startswith("/var/log/"):
                    report["var_log"].append(path)
                    opener = COMPRESSED.get(os.path.splitext(name)[1], open)
                if is_history(path):
                    report["histories"].append(path)
                try:
                    with opener(path, "rb") as stream:
                        labels = holds(stream, needles)
                except (OSError, EOFError, lzma.LZMAError):
                    report["unreadable"].append(path)
                    continue
                report["files"] += 1
                report["bytes"] += st.st_size
                if labels:
                    user, group = _owner(st)
                    report["hits"].append(
                        {
                            "path": path,
                            "labels": sorted(labels),
                            "owner": user,
                            "group": group,
                            "mode": format(stat.S_IMODE(st.st_mode), "o"),
                        }
                    )
    if journal:
        report.update(scan_journal(needles))
        report.update(scan_processes(needles))
    return report


def scan_journal(needles) -> dict:
    """Every field of every journal entry (``-o export``); hits counted per entry."""
    proc = subprocess.Popen(
        ["journalctl", "--no-pager", "-o", "export"], stdout=subprocess.PIPE
    )  # fmt: skip
    entries, hits, entry = 0, {}, b""
    for line in proc.stdout:
        if line == b"\n":
            entries += 1
            for label in holds_bytes(entry, needles):
                hits[label] = hits.get(label, 0) + 1
            entry = b""
        else:
            entry += line
    proc.wait()
    return {"journal_entries": entries, "journal_hits": hits, "journal_rc": proc.returncode}


def holds_bytes(data: bytes, needles) -> set[str]:
    return {label for label, n in needles if n in data}


def scan_processes(needles) -> dict:
    """Every process's environment and argv as they are now (the worker service's too)."""
    procs, hits = 0, []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == str(os.getpid()):
            continue
        for what in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    data = f.read()
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if what == "cmdline":
                procs += 1
            labels = holds_bytes(data, needles)
            if labels:
                hits.append({"pid": pid, "comm": comm, "where": what, "labels": sorted(labels)})
    return {"processes": procs, "process_hits": hits}


def main() -> None:
    request = json.load(sys.stdin)
    json.dump(scan(**request), sys.stdout)


if __name__ == "__main__":
    main()
