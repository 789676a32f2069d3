#!/usr/bin/env python3
"""Bootstrap Pis fresh out of Raspberry Pi Imager: password login to key login.

    tools/bootstrap.py inventory/<room> [--yes] [--password-file FILE] [--limit HOST,..]
    (make bootstrap INVENTORY=inventory/<room> [YES=1] [PASSWORD_FILE=FILE] [LIMIT=..])

A Pi out of the imager has only the user name and password typed into the
imager. For every host of the inventory this:

1. records its SSH host keys in the room's known_hosts, fingerprints shown and
   confirmed (tools/known_hosts.py, the same file and checks every playbook
   run uses); a host already recorded must still answer with its key;
2. logs in with the password, over paramiko, checking the host key against
   that file (a host that answers with another key gets nothing, no password);
3. as root (sudo; the password goes to ``sudo -S`` on its stdin when sudo asks
   for one): adds the admin's public key to the user's authorized_keys, sets
   the host name to the inventory name;
4. logs in again with the key, and only then turns password login off
   (``/etc/ssh/sshd_config.d/pimq-bootstrap.conf``, sshd reloaded; pimq_head
   later allows passwords for students only) and checks that the password is
   now refused.

Re-running it is safe: a Pi that already takes the key and refuses the
password is reported and left alone. The password is asked once (no echo) or
read from ``--password-file`` (e.g. a file ``ansible-vault view`` fills in a
private folder); it is never in argv, the environment, output or a file this
writes. The key: the inventory's ``ansible_ssh_private_key_file`` (its
``.pub`` beside it), else ``~/.ssh/id_ed25519``; the user: ``ansible_user``,
else ``pi``.
"""

from __future__ import annotations

import argparse
import getpass
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import known_hosts
import paramiko

DROPIN = "/etc/ssh/sshd_config.d/pimq-bootstrap.conf"
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class Refused(Exception):
    pass


@dataclass(frozen=True)
class Pi:
    name: str
    address: str
    port: int
    user: str
    key: Path  # the private key; its .pub is installed


def pis(inventory: Path, limit: set[str]) -> list[Pi]:
    found = []
    for name, hv in known_hosts.ssh_hostvars(inventory).items():
        if limit and name not in limit:
            continue
        address, port = known_hosts.address_port(name, hv)
        key = Path(hv.get("ansible_ssh_private_key_file", "~/.ssh/id_ed25519")).expanduser()
        found.append(Pi(name, address, port, str(hv.get("ansible_user", "pi")), key))
    unknown = limit - {p.name for p in found}
    if unknown:
        raise Refused(f"--limit: not hosts of {inventory}: {', '.join(sorted(unknown))}")
    return found


def client(pi: Pi, known: Path) -> paramiko.SSHClient:
    ssh = paramiko.SSHClient()
    ssh.load_host_keys(str(known))  # the room's file only, never ~/.ssh/known_hosts
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    return ssh


def login(pi: Pi, known: Path, password: str | None) -> paramiko.SSHClient | None:
    """A session as the Pi's user, by password or (None) by key; None if refused.
    A host key other than the recorded one raises (nothing was sent). A refused
    connection is tried again for a while: sshd re-executes itself on a reload."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return _login(pi, known, password)
        except Unreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


class Unreachable(Refused):
    pass


def _login(pi: Pi, known: Path, password: str | None) -> paramiko.SSHClient | None:
    ssh = client(pi, known)
    try:
        ssh.connect(
            pi.address,
            pi.port,
            username=pi.user,
            password=password,
            key_filename=None if password is not None else str(pi.key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            auth_timeout=15,
        )
    except paramiko.AuthenticationException:
        ssh.close()
        return None
    except paramiko.BadHostKeyException as exc:
        ssh.close()
        raise Refused(f"{pi.name}: host key differs from the room's known_hosts: {exc}") from None
    except paramiko.SSHException as exc:  # RejectPolicy: not recorded
        ssh.close()
        raise Refused(f"{pi.name} ({pi.address}): {exc}") from None
    except OSError as exc:
        ssh.close()
        raise Unreachable(f"{pi.name} ({pi.address}): cannot connect: {exc}") from None
    return ssh


def run(ssh: paramiko.SSHClient, command: str, stdin: str = "") -> tuple[int, str]:
    chan_in, out, err = ssh.exec_command(command, timeout=60)
    if stdin:
        chan_in.write(stdin)
    chan_in.channel.shutdown_write()
    text = out.read().decode(errors="replace") + err.read().decode(errors="replace")
    return out.channel.recv_exit_status(), text


def as_root(ssh: paramiko.SSHClient, script: str, password: str) -> tuple[int, str]:
    """``script`` through sudo: without a password if sudo allows (Raspberry Pi
    OS's imager user), else with it on sudo's stdin (``-S``), never in argv."""
    quoted = shlex.quote(script)
    rc, _ = run(ssh, "sudo -n true")
    if rc == 0:
        return run(ssh, f"sudo -n sh -c {quoted}")
    return run(ssh, f"sudo -S -p '' sh -c {quoted}", stdin=password + "\n")


def setup_script(pi: Pi, pubkey: str) -> str:
    home = f"$(getent passwd {shlex.quote(pi.user)} | cut -d: -f6)"
    name = shlex.quote(pi.name)
    return "\n".join(
        [
            "set -eu",
            f"home={home}",
            f"user={shlex.quote(pi.user)}",
            'group=$(id -gn "$user")',
            'install -d -m 0700 -o "$user" -g "$group" "$home/.ssh"',
            'touch "$home/.ssh/authorized_keys"',
            f'grep -qxF {shlex.quote(pubkey)} "$home/.ssh/authorized_keys"'
            f' || echo {shlex.quote(pubkey)} >> "$home/.ssh/authorized_keys"',
            'chown "$user:$group" "$home/.ssh/authorized_keys"',
            'chmod 0600 "$home/.ssh/authorized_keys"',
            f'if [ "$(hostname)" != {name} ]; then',
            f"  echo {name} > /etc/hostname",
            f"  hostname {name}",
            f"  sed -i 's/^127\\.0\\.1\\.1[[:space:]].*/127.0.1.1\\t{pi.name}/' /etc/hosts",
            "  grep -q '^127\\.0\\.1\\.1' /etc/hosts"
            f" || printf '127.0.1.1\\t%s\\n' {name} >> /etc/hosts",
            "fi",
        ]
    )


PASSWORD_OFF = "\n".join(
    [
        "set -eu",
        f"cat > {DROPIN}.tmp <<'EOF'",
        "# Written by pimq's bootstrap (tools/bootstrap.py): keys only. pimq_head",
        "# allows passwords again for students only (pimq.conf's Match block).",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "EOF",
        f"chmod 0644 {DROPIN}.tmp",
        f"mv {DROPIN}.tmp {DROPIN}",
        "sshd -t",
        "systemctl reload ssh",
    ]
)


def bootstrap(pi: Pi, known: Path, password: str, pubkey: str) -> str:
    """What was done to ``pi`` (one line)."""
    takes_key = login(pi, known, None)
    if takes_key is not None:
        takes_key.close()
    ssh = login(pi, known, password)
    if ssh is None:
        if takes_key is not None:
            return "takes the key and refuses the password already: left alone"
        raise Refused(
            f"{pi.name}: the password for {pi.user} was refused, and the key "
            f"({pi.key}) too: check the user name and password typed into the imager"
        )
    try:
        rc, out = as_root(ssh, setup_script(pi, pubkey), password)
        if rc != 0:
            raise Refused(f"{pi.name}: installing the key failed (as root): {out.strip()[-300:]}")
    finally:
        ssh.close()
    check = login(pi, known, None)
    if check is None:
        raise Refused(f"{pi.name}: the key was installed but is refused: password login left on")
    try:
        rc, out = as_root(check, PASSWORD_OFF, password)
        if rc != 0:
            raise Refused(f"{pi.name}: turning password login off failed: {out.strip()[-300:]}")
    finally:
        check.close()
    # systemctl reload returns once sshd has its SIGHUP, not once it has read
    # the drop-in: a login just after may still meet the old sshd
    deadline = time.monotonic() + 15
    while (still := login(pi, known, password)) is not None:
        still.close()
        if time.monotonic() > deadline:
            raise Refused(f"{pi.name}: sshd still takes the password after {DROPIN}")
        time.sleep(1)
    return f"key installed for {pi.user}, host name {pi.name}, password login off"


def read_password(path: Path | None) -> str:
    if path is not None:
        if path.stat().st_mode & 0o077:
            raise Refused(f"{path} is readable by others: chmod 600 it")
        lines = path.read_text().splitlines()
        if not lines or not lines[0]:
            raise Refused(f"{path}: empty (the first line is the password)")
        return lines[0]
    if not sys.stdin.isatty():
        raise Refused("no terminal to ask the password on: give --password-file FILE")
    return getpass.getpass("Password of the Pis' user (as typed into the imager): ")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("inventory", type=Path, help="the room's inventory folder")
    p.add_argument("--yes", action="store_true", help="record new host keys without asking")
    p.add_argument("--password-file", type=Path, help="first line: the imager password (0600)")
    p.add_argument("--limit", default="", help="only these hosts (comma-separated)")
    args = p.parse_args(argv)
    known = args.inventory / "known_hosts"
    try:
        targets = pis(args.inventory, {h for h in args.limit.split(",") if h})
        for pi in targets:
            if not HOSTNAME_RE.match(pi.name):
                raise Refused(
                    f"{pi.name}: not a host name (a-z, 0-9, -): rename it in the inventory"
                )
        pubkeys = {pi.key.with_suffix(".pub") for pi in targets}
        missing = sorted(str(k) for k in pubkeys if not k.exists())
        if missing:
            raise Refused(f"no public key {', '.join(missing)}: ssh-keygen -t ed25519 makes one")
        if known_hosts.main([str(args.inventory), *(["--yes"] if args.yes else [])]) != 0:
            raise Refused("host keys not recorded: nothing was sent to any Pi")
        password = read_password(args.password_file)
        failed = 0
        for pi in targets:
            pubkey = pi.key.with_suffix(".pub").read_text().strip()
            try:
                print(f"{pi.name} ({pi.address}): {bootstrap(pi, known, password, pubkey)}")
            except Refused as exc:
                failed += 1
                print(f"bootstrap: {exc}", file=sys.stderr)
        if failed:
            print(f"bootstrap: {failed} of {len(targets)} Pi(s) not done", file=sys.stderr)
            return 1
        print(
            f"{len(targets)} Pi(s) take the key only; next: make deploy INVENTORY={args.inventory}"
        )
        return 0
    except Refused as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
