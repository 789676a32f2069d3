#!/usr/bin/env python3
"""Record a room's SSH host keys once: inventory/<room>/known_hosts.

    tools/known_hosts.py inventory/<room> [--yes] [--from FILE] [--replace HOST ...]
    (make known-hosts INVENTORY=inventory/<room> [YES=1] [FROM=FILE] [REPLACE=HOST])

Every run of the playbooks verifies each Pi's host key against this file
(the inventory's ansible_ssh_common_args: -o UserKnownHostsFile=... -o
StrictHostKeyChecking=yes), so nothing - no password - is sent to a machine
that merely answers at a Pi's address. This tool makes the file:

- For every host of the inventory not in the file yet, it reads the host's
  keys with ssh-keyscan (or, with --from, from a known_hosts-format FILE you
  collected yourself, e.g. from each Pi's console with
  `ssh-keyscan localhost` or `cat /etc/ssh/ssh_host_*_key.pub`), prints their
  SHA256 fingerprints, and asks you to confirm them (compare with
  `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the Pi's own screen)
  unless --yes (or --from: keys you provide are taken as checked).
- A host already in the file is scanned again and compared: a changed key is
  shown and nothing is written; record the new key with --replace HOST once
  you know why it changed (a re-imaged SD card).

Python standard library and OpenSSH only (ssh-keyscan, ssh-keygen); the hosts
are listed with ansible-inventory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER = (
    "# SSH host keys of this room, checked on every run (StrictHostKeyChecking=yes).\n"
    "# Written by tools/known_hosts.py (make known-hosts); see inventory/example/README.md.\n"
)
KEY_TYPES = "ed25519,ecdsa,rsa"


class Refused(Exception):
    pass


def ssh_hostvars(inventory: Path) -> dict[str, dict]:
    """{inventory name: its variables} of every host Ansible reaches over SSH."""
    tool = shutil.which("ansible-inventory") or str(
        Path(sys.executable).parent / "ansible-inventory"
    )
    out = subprocess.run(
        [tool, "-i", str(inventory), "--list"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise Refused(f"ansible-inventory -i {inventory} failed: {out.stderr.strip()}")
    hostvars = json.loads(out.stdout).get("_meta", {}).get("hostvars", {})
    return {
        name: hv
        for name, hv in sorted(hostvars.items())
        if hv.get("ansible_connection", "ssh") in ("ssh", "smart", "ansible.builtin.ssh")
    }


def address_port(name: str, hv: dict) -> tuple[str, int]:
    return str(hv.get("ansible_host", name)), int(
        hv.get("ansible_port", hv.get("ansible_ssh_port", 22))
    )


def hosts_of(inventory: Path) -> dict[str, str]:
    """{inventory name: known_hosts host field} of every host (address, [address]:port)."""
    hosts = {}
    for name, hv in ssh_hostvars(inventory).items():
        address, port = address_port(name, hv)
        hosts[name] = address if port == 22 else f"[{address}]:{port}"
    return hosts


def parse(text: str) -> dict[str, list[str]]:
    """{host field: ["type key", ...]} of known_hosts text (comments skipped;
    a line for several hosts counts for each)."""
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#") or fields[0].startswith("@"):
            continue
        for host in fields[0].split(","):
            keys.setdefault(host, []).append(f"{fields[1]} {fields[2]}")
    return keys


def scan(host: str) -> list[str]:
    address, port = host, "22"
    if host.startswith("["):
        address, port = host[1:].split("]:")
    out = subprocess.run(
        ["ssh-keyscan", "-T", "5", "-t", KEY_TYPES, "-p", port, address],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return sorted({" ".join(f[1:3]) for f in (ln.split() for ln in out.stdout.splitlines())
                   if len(f) >= 3 and not f[0].startswith("#")})  # fmt: skip


def fingerprints(keys: list[str]) -> list[str]:
    lines = []
    for key in keys:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", "-"],
            input=f"{key}\n", capture_output=True, text=True, check=False,
        )  # fmt: skip
        fields = out.stdout.split()
        lines.append(f"{fields[1]} {fields[-1]}" if out.returncode == 0 and fields else key)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("inventory", type=Path, help="the room's inventory folder")
    p.add_argument("--yes", action="store_true", help="record new keys without asking")
    p.add_argument("--from", dest="source", type=Path, help="take keys from this known_hosts file")
    p.add_argument(
        "--replace", action="append", default=[], metavar="HOST",
        help="forget HOST's recorded keys and record its current ones (repeatable)",
    )  # fmt: skip
    args = p.parse_args(argv)
    target = args.inventory / "known_hosts"
    try:
        hosts = hosts_of(args.inventory)
        unknown = sorted(set(args.replace) - set(hosts))
        if unknown:
            raise Refused(f"--replace: not hosts of {args.inventory}: {', '.join(unknown)}")
        recorded = parse(target.read_text()) if target.exists() else {}
        provided = parse(args.source.read_text()) if args.source else None
        new: dict[str, list[str]] = {}
        changed = []
        for name, host in hosts.items():
            have = sorted(recorded.get(host, []))
            now = sorted(provided.get(host, [])) if provided is not None else scan(host)
            if not now:
                raise Refused(
                    f"{name} ({host}): no host key "
                    + ("in " + str(args.source) if provided is not None else "answered ssh-keyscan")
                )
            if have and name not in args.replace:
                if not set(now) & set(have):
                    changed.append(name)
                    print(
                        f"{name} ({host}): KEY CHANGED - recorded {', '.join(fingerprints(have))}"
                    )
                    print(f"{' ' * len(name)}   now answers {', '.join(fingerprints(now))}")
                else:
                    print(f"{name} ({host}): recorded, unchanged")
                continue
            new[name] = now
            for fp in fingerprints(now):
                print(f"{name} ({host}): {'replaced by ' if have else ''}{fp}")
        if changed:
            raise Refused(
                f"host key changed for {', '.join(changed)}: nothing written. If you know why "
                "(a re-imaged Pi), compare the new fingerprint with the Pi's own "
                "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on its screen) and record it "
                f"with --replace {' --replace '.join(changed)}"
            )
        if not new:
            print(f"{target}: every host recorded, nothing to add")
            return 0
        if not (args.yes or provided is not None):
            if not sys.stdin.isatty():
                raise Refused("not confirmed (no terminal): check the fingerprints, then --yes")
            print(
                "Compare each with the Pi's own: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
            )
            if input("Record these host keys? [yes/no] ").strip().lower() not in ("y", "yes"):
                raise Refused("not confirmed: nothing written")
        keep = {h: k for h, k in recorded.items() if h not in {hosts[n] for n in new}}
        lines = [HEADER]
        for host, keys in sorted(keep.items()) + sorted((hosts[n], k) for n, k in new.items()):
            lines += [f"{host} {key}\n" for key in keys]
        fd, tmp = tempfile.mkstemp(dir=args.inventory, prefix=".known_hosts.")
        with os.fdopen(fd, "w") as f:
            f.writelines(lines)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        print(f"{target}: {len(new)} host(s) recorded")
        return 0
    except Refused as e:
        print(f"known-hosts: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
