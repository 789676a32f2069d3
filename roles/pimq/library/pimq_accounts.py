#!/usr/bin/python
"""Student accounts on the head node, with their SSH key and pimq config file, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pimq_accounts
short_description: Converge student accounts, their SSH key and one private config file in one call
description:
  - For every account in C(accounts), on the managed node, in one module run
    (instead of one round trip per student and per file) - the Linux user
    (C(useradd)/C(usermod); comment, home, shell, supplementary groups
    appended), its home (owner, group, C(home_mode)), the roster's SSH key in
    C(~/.ssh/authorized_keys) (C(.ssh) 0700, file 0600), and the config file
    C(~/config_path) (parent folders 0700, file 0600, all the student's).
  - An account given a C(password) gets it (C(chpasswd), on its standard
    input: never in argv) when it has no usable one - just created, or made
    while password login was off - never over a password it has, so a
    student's own C(passwd) change stays - unless the account is in
    C(reset_password) (the teacher's C(make reset-password)).
  - Every user in C(absent) is removed (C(userdel), with C(-r -f) when C(remove_home)).
    With C(archive_dir), the home is first archived (C(archive_dir/name-<UTC time>.tar.gz),
    root's, 0600, in a root-owned 0700 folder); a failed archive removes nothing.
  - pimq changes or removes only the accounts it made - members of
    C(marker_group) (a system group, created if missing; every new account is
    made a member). An account an earlier pimq made (its own primary group, the
    home under C(home_base), the GECOS and pimq's config file owned by the user)
    is marked on the first run. Any other user, or a group, of a roster name
    (a teacher's login, C(sudo), C(disk)) fails the task before anything is
    changed, naming each; a new account always gets its own new primary group
    (C(useradd --user-group)), never an existing one. The decision is
    module_utils/pimq_owners.py, shared with preflight's pimq_account_owners.
  - Inside a home nothing is followed that the student could have made a
    symbolic link; folders are walked by file descriptor. A symlink where a
    folder or file belongs is replaced (its target is left alone); a file
    where a folder belongs, or a folder where a file belongs, fails the task.
  - The group of what is written is the group named like the student if it
    exists (C(useradd -U) makes it), else the account's primary group.
  - A custom module because one call per run converges the whole roster
    (C(ansible.builtin.user) plus file tasks cost round trips per student and
    file) and works inside homes by descriptor.
  - Supports check mode and reports every change in C(changes) (never a file's content).
options:
  accounts:
    description:
      - Accounts that must exist. Each has C(name), C(comment), C(ssh_key) (one
        OpenSSH public key line, or empty for none), C(config) (the content
        of the config file, a secret) and C(password) (the login password, a
        secret; empty for none).
    type: list
    elements: dict
    default: []
  absent:
    description: Users that must not exist.
    type: list
    elements: str
    default: []
  home_base:
    description: Folder the homes are in (C(home_base/name)).
    type: str
    default: /home
  home_mode:
    description: Mode of every home.
    type: str
    default: "0700"
  shell:
    description: Login shell.
    type: str
    default: /bin/bash
  groups:
    description: Supplementary groups every account is added to (never removed from others).
    type: list
    elements: str
    default: []
  exclusive_keys:
    description:
      The roster's key replaces every other line of C(authorized_keys); else it is
      added (or its line updated).
    type: bool
    default: false
  remove_home:
    description: Remove the home (and the user's processes) of an absent user.
    type: bool
    default: true
  archive_dir:
    description:
      - With C(remove_home), archive an absent user's home here before it is
        removed (tar.gz, owner root, mode 0600; the folder is made root's,
        0700). Empty - no archive.
    type: str
    default: ""
  reset_password:
    description:
      - Accounts whose C(password) is set even though they have a usable one
        (a password reset by the teacher). Not idempotent by design - each run
        with a name here sets it again.
    type: list
    elements: str
    default: []
  config_path:
    description: Path of the config file, relative to the home.
    type: str
    default: .config/pimq/config.yaml
  marker_group:
    description: The system group every account pimq makes is a member of (its mark of ownership).
    type: str
    default: pimq-students
author: pimq
"""

EXAMPLES = r"""
- name: Student accounts and their config files
  pimq_accounts:
    accounts:
      - name: alice
        comment: Alice Liddell
        ssh_key: ssh-ed25519 AAAAC3Nza... alice@laptop
        config: "{{ alice_config }}"
    absent: [mallory]
  no_log: true
"""

RETURN = r"""
changes:
  description: >-
    One line per change made (or that would be made in check mode), e.g.
    C(account alice: created). Never contains a secret (no config file content).
  type: list
  returned: always
"""

import errno
import grp
import os
import pwd
import re
import stat
import tarfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pimq_owners import (
    FREE,
    LEGACY,
    REFUSED,
    Verdict,
    inspect,
    login_defs,
    verdict,
)
from ansible.module_utils.pimq_run import ModuleRun, list_of
from ansible.module_utils.pimq_write import replace_file

KEY_TYPE = re.compile(
    r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)"
    r"|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$"
)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def key_id(line: str) -> tuple[str, str] | None:
    """(type, blob) of an authorized_keys line, options and comment aside; None if
    it holds no key."""
    fields = line.split()
    for i, field in enumerate(fields[:-1]):
        if KEY_TYPE.match(field):
            return field, fields[i + 1]
    return None


class Accounts(ModuleRun):
    # --- the account ----------------------------------------------------------------
    def user(self, spec: dict[str, Any]) -> pwd.struct_passwd | None:
        name = spec["name"]
        home = os.path.join(self.p["home_base"], name)
        comment = spec.get("comment") or ""
        shell = self.p["shell"]
        groups = self.p["groups"]
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            pw = None
        if pw is None:
            if not self.change(f"account {name}: created"):
                return None
            cmd = ["useradd", "--comment", comment, "--home-dir", home, "--shell", shell]
            # Its own new group, never an existing one (the verdict was FREE:
            # no group of that name exists), and the marker group.
            cmd += ["--create-home", "--user-group"]
            cmd += ["--groups", ",".join([self.p["marker_group"], *groups])]
            self.command([*cmd, name])
            self.password(spec, created=True)
            return pwd.getpwnam(name)
        self.password(spec, created=False)
        cmd, what = [], []
        if pw.pw_gecos != comment:
            cmd += ["--comment", comment]
            what.append("comment")
        if pw.pw_dir != home:
            cmd += ["--home", home]
            what.append(f"home {pw.pw_dir} -> {home}")
        if pw.pw_shell != shell:
            cmd += ["--shell", shell]
            what.append(f"shell {pw.pw_shell} -> {shell}")
        missing = [g for g in groups if not self.member(name, pw.pw_gid, g)]
        if missing:
            cmd += ["--append", "--groups", ",".join(missing)]
            what.append(f"groups +{','.join(missing)}")
        if cmd and self.change(f"account {name}: {', '.join(what)} updated"):
            self.command(["usermod", *cmd, name])
        return pwd.getpwnam(name)

    def password(self, spec: dict[str, Any], created: bool) -> None:
        """Set the account's login password if it has no usable one (a new
        account, or one whose password is locked or empty)."""
        name, password = spec["name"], spec.get("password") or ""
        if not password:
            return
        if any(c in password for c in ":\n"):
            self.fail(f"account {name}: a login password cannot hold ':' or a line break")
        reset = name in self.p["reset_password"]
        if not created and not reset and self.has_password(name):
            return
        what = "reset" if reset and not created else "set"
        if created or self.change(f"account {name}: login password {what}"):
            self.command(["chpasswd"], data=f"{name}:{password}")  # run_command adds the newline

    @staticmethod
    def has_password(name: str) -> bool:
        """Whether /etc/shadow holds a usable password hash for `name` (not
        locked with '!' or '*', not empty)."""
        with open("/etc/shadow", encoding="utf-8") as shadow:
            for line in shadow:
                fields = line.rstrip("\n").split(":")
                if fields[0] == name:
                    hashed = fields[1] if len(fields) > 1 else ""
                    return bool(hashed) and hashed[0] not in "!*"
        return False

    @staticmethod
    def group_exists(name: str) -> bool:
        try:
            grp.getgrnam(name)
            return True
        except KeyError:
            return False

    def member(self, user: str, gid: int, group: str) -> bool:
        try:
            g = grp.getgrnam(group)
        except KeyError:
            self.fail(f"group {group} does not exist")
        return g.gr_gid == gid or user in g.gr_mem

    # --- files inside the home, by descriptor -----------------------------------------
    def attrs(self, fd: int, label: str, uid: int, gid: int, mode: int, new: bool = False) -> None:
        """Owner and mode of an open file or folder (`new`: just made, its creation
        already reported)."""
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (uid, gid) and (new or self.change(f"{label}: owner set")):
            os.fchown(fd, uid, gid)
        have = stat.S_IMODE(st.st_mode)
        if have != mode and (new or self.change(f"{label}: mode {have:04o} -> {mode:04o}")):
            os.fchmod(fd, mode)

    def subdir(
        self, parent_fd: int, name: str, label: str, uid: int, gid: int, mode: int
    ) -> int | None:
        """The folder `name` in parent_fd (created if missing), as an open descriptor; None in
        check mode when it does not exist yet."""
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISLNK(st.st_mode):
                self.fail(f"{label} is not a folder: not touching it")
            # Missing, or a symlink (never followed: it is replaced, its target left alone).
            what = "created" if st is None else "symlink replaced by a folder"
            if not self.change(f"{label}: {what}"):
                return None
            if st is not None:
                os.unlink(name, dir_fd=parent_fd)
            os.mkdir(name, mode, dir_fd=parent_fd)
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
            self.attrs(fd, label, uid, gid, mode, new=True)
            return fd
        self.attrs(fd, label, uid, gid, mode)
        return fd

    def read_file(self, dir_fd: int, name: str) -> tuple[bytes, int] | tuple[None, None]:
        """(content, fd) of a regular file; (None, None) if it is missing or a symlink."""
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None, None
        except OSError as err:
            if err.errno == errno.ELOOP:
                return None, None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self.fail(f"{name} is not a regular file: not touching it")
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), fd

    def put_file(
        self, dir_fd: int, name: str, label: str, data: bytes, uid: int, gid: int, mode: int
    ) -> None:
        old, fd = self.read_file(dir_fd, name)
        if old == data:
            self.attrs(fd, label, uid, gid, mode)
            os.close(fd)
            return
        if fd is not None:
            os.close(fd)
        if self.change(f"{label}: {'written' if old is None else 'updated'}"):
            replace_file(dir_fd, name, data, uid, gid, mode)

    def home(self, spec: dict[str, Any], pw: pwd.struct_passwd) -> None:
        name = spec["name"]
        uid = pw.pw_uid
        gid = grp.getgrnam(name).gr_gid if self.group_exists(name) else pw.pw_gid
        home = os.path.join(self.p["home_base"], name)
        # The home itself sits in a folder the student cannot write: it may be
        # an admin's symlink. Everything inside it is the student's.
        try:
            home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not self.change(f"home {home}: created"):
                return
            os.mkdir(home, 0o700)
            home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            os.fchown(home_fd, uid, gid)
        fds = [home_fd]
        try:
            self.attrs(home_fd, f"home {home}", uid, gid, int(self.p["home_mode"], 8))
            key = (spec.get("ssh_key") or "").strip()
            if key:
                ssh_fd = self.subdir(home_fd, ".ssh", f"{home}/.ssh", uid, gid, 0o700)
                if ssh_fd is not None:
                    fds.append(ssh_fd)
                    self.authorized_key(ssh_fd, f"{home}/.ssh/authorized_keys", key, uid, gid)
            parts = [p for p in self.p["config_path"].split("/") if p not in ("", ".")]
            if ".." in parts or not parts:
                self.fail("config_path must be a relative path inside the home")
            dir_fd, label = home_fd, home
            path = "/".join([home, *parts])
            for part in parts[:-1]:
                label = f"{label}/{part}"
                dir_fd = self.subdir(dir_fd, part, label, uid, gid, 0o700)
                if dir_fd is None:  # check mode: the folder does not exist yet
                    self.changes.append(f"{path}: written")
                    return
                fds.append(dir_fd)
            config = (spec.get("config") or "").encode("utf-8")
            self.put_file(dir_fd, parts[-1], path, config, uid, gid, 0o600)
        finally:
            for fd in reversed(fds):
                os.close(fd)

    def authorized_key(self, ssh_fd: int, label: str, key: str, uid: int, gid: int) -> None:
        old, fd = self.read_file(ssh_fd, "authorized_keys")
        if fd is not None:
            os.close(fd)
        lines = (old or b"").decode("utf-8", "replace").splitlines()
        wanted = key_id(key)
        if self.p["exclusive_keys"]:
            new_lines = [key]
        else:
            new_lines, found = [], False
            for line in lines:
                if wanted is not None and key_id(line) == wanted:
                    if not found:
                        new_lines.append(key)
                    found = True
                else:
                    new_lines.append(line)
            if not found:
                new_lines.append(key)
        data = ("\n".join(new_lines) + "\n").encode("utf-8")
        if old is not None and old.decode("utf-8", "replace").splitlines() == new_lines:
            data = old  # same lines: keep the file byte for byte
        self.put_file(ssh_fd, "authorized_keys", label, data, uid, gid, 0o600)

    # --- removal ------------------------------------------------------------------------
    def remove(self, name: str) -> None:
        if self.verdicts[name].kind == FREE:
            return
        archive = self.p["archive_dir"]
        if archive and self.p["remove_home"]:
            self.archive(name, archive)  # (a failure fails the task: nothing removed)
        if self.change(f"account {name}: removed"):
            cmd = ["userdel"]
            if self.p["remove_home"]:
                cmd += ["--remove", "--force"]
            self.command([*cmd, name])

    def archive(self, name: str, folder: str) -> str | None:
        """Archive the home of `name` (their account's home) into `folder`; the
        archive's path, or None in check mode. A home that is missing is not
        archived (the account is still removed)."""
        try:
            home = pwd.getpwnam(name).pw_dir
        except KeyError:
            return ""
        if not os.path.isdir(home):
            return ""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = os.path.join(folder, f"{name}-{stamp}.tar.gz")
        if not self.change(f"account {name}: home {home} archived to {path}"):
            return None
        self.archive_folder(folder)
        part = os.path.join(folder, f".{name}-{stamp}.tar.gz.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with (
                os.fdopen(fd, "wb") as raw,
                tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar,
            ):
                # Symbolic links are stored as links, never followed.
                tar.add(os.path.realpath(home), arcname=name, recursive=True)
            os.rename(part, path)
        except OSError as exc:
            try:
                os.unlink(part)
            except FileNotFoundError:
                pass
            self.fail(f"account {name}: archiving {home} failed ({exc}): nothing was removed")
        return path

    def archive_folder(self, folder: str) -> None:
        """The archive folder: made if missing (0700, root's); refused if it is a
        symbolic link or someone else's."""
        if not os.path.isabs(folder):
            self.fail(f"archive_dir {folder} is not an absolute path")
        os.makedirs(os.path.dirname(folder), mode=0o755, exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
            self.fail(f"archive_dir {folder} is not a folder of root's: not archiving into it")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(folder, 0o700)

    # --- ownership ----------------------------------------------------------------------
    def judge(self) -> None:
        """The verdict on every name, before anything changes: the task fails naming
        every name pimq did not make; accounts of an earlier pimq get the marker."""
        marker = self.p["marker_group"]
        uid_min, gid_min = login_defs()
        # An absent student's full name is not known here (None): an earlier
        # pimq's account is recognised by everything else.
        comments: dict[str, str | None] = {a["name"]: a["comment"] for a in self.p["accounts"]}
        comments.update({n: None for n in self.p["absent"]})
        self.verdicts: dict[str, Verdict] = {}
        for name, comment in comments.items():
            found = inspect(name, marker, self.p["config_path"])
            self.verdicts[name] = verdict(
                found, comment, self.p["home_base"], marker, True, uid_min, gid_min
            )
        refused = [f"{n}: {v.reason}" for n, v in self.verdicts.items() if v.kind == REFUSED]
        if refused:
            self.fail("not pimq's, nothing was changed: " + " | ".join(refused))
        if not self.group_exists(marker) and self.change(f"group {marker}: created"):
            self.command(["groupadd", "--system", marker])
        present = {a["name"] for a in self.p["accounts"]}
        for name, v in self.verdicts.items():  # (an absent one is simply removed)
            if v.kind == LEGACY and name in present and self.change(f"account {name}: {v.reason}"):
                self.command(["usermod", "--append", "--groups", marker, name])

    def run(self) -> dict[str, Any]:
        present = {a["name"] for a in self.p["accounts"]}
        both = sorted(present & set(self.p["absent"]))
        if both:
            self.fail(f"both present and absent: {', '.join(both)}")
        self.judge()
        for spec in self.p["accounts"]:
            pw = self.user(spec)
            if pw is None:  # check mode, not created yet
                home = f"{self.p['home_base']}/{spec['name']}"
                self.changes.append(f"home {home}: created, with key and config")
                continue
            self.home(spec, pw)
        for name in self.p["absent"]:
            self.remove(name)
        return self.result()


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            accounts=list_of(
                "dict",
                options=dict(
                    name=dict(type="str", required=True),
                    comment=dict(type="str", default=""),
                    ssh_key=dict(type="str", default=""),
                    config=dict(type="str", default="", no_log=True),
                    password=dict(type="str", default="", no_log=True),
                ),
            ),
            absent=list_of("str"),
            home_base=dict(type="str", default="/home"),
            home_mode=dict(type="str", default="0700"),
            shell=dict(type="str", default="/bin/bash"),
            groups=list_of("str"),
            exclusive_keys=dict(type="bool", default=False),
            remove_home=dict(type="bool", default=True),
            archive_dir=dict(type="str", default=""),
            reset_password=list_of("str"),
            config_path=dict(type="str", default=".config/pimq/config.yaml"),
            marker_group=dict(type="str", default="pimq-students"),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**Accounts(module).run())


if __name__ == "__main__":
    main()
