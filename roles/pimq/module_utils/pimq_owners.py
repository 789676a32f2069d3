"""Whose is a Linux account: shared by the pimq_accounts and pimq_account_owners
modules (Ansible ships it to the node with them).

pimq marks every account it makes by making it a member of one system group,
the marker group (``pimq-students`` by default; see roles/pimq_head/README.md
for why a group). :func:`verdict` is the one decision, pure: what pimq may do
with a roster name on a node, given what the node has under that name
(:func:`inspect` reads it). pimq never changes or removes an account it did
not make, and never gives a student an existing group as primary group.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from dataclasses import dataclass

# What a node has under a name that pimq may use.
FREE = "free"  # no user, no group: pimq may create the account
PIMQ = "pimq"  # a member of the marker group: pimq made it
LEGACY = "legacy"  # made by a pimq before the marker: to be marked, then pimq's
REFUSED = "refused"  # someone else's: pimq touches nothing

# The first bytes of every config file pimq_head has written (its format:
# roles/pimq_head/filter_plugins/pimq_head.py), for `name`.
CONFIG_HEADER = "# pimq client configuration of {name} ("

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Found:
    """What a node has under one name (all None/empty: nothing)."""

    name: str
    uid: int | None = None  # the user of that name, if any
    gid: int | None = None  # its primary group's gid
    primary_group: str | None = None  # its primary group's name
    gecos: str | None = None
    home: str | None = None
    group_gid: int | None = None  # the group of that name, if any
    group_members: tuple[str, ...] = ()
    marked: bool = False  # the user is a member of the marker group
    # The user owns ~/<config_path>, a regular file starting with CONFIG_HEADER.
    pimq_config: bool = False


@dataclass(frozen=True)
class Verdict:
    kind: str  # FREE, PIMQ, LEGACY or REFUSED
    reason: str = ""  # why, for REFUSED (and LEGACY): one line for the admin


def verdict(
    found: Found,
    comment: str | None,
    home_base: str,
    marker: str,
    creates_accounts: bool = True,
    uid_min: int = 1000,
    gid_min: int = 1000,
) -> Verdict:
    """What pimq may do with the roster name ``found.name`` on this node.

    `comment` is the GECOS pimq gives the account (the roster's full name;
    None: not known, as for a student being removed, and not checked),
    `home_base` the folder of the homes, `marker` the marker group's name,
    `creates_accounts` whether pimq makes accounts on this node (the head) at
    all: on any other node every user or group of that name is someone else's.
    `uid_min`/`gid_min` (login.defs) separate system accounts from people's.
    """
    name = found.name
    if found.uid is None:
        if found.group_gid is None:
            return Verdict(FREE)
        return Verdict(
            REFUSED,
            f"a group {name} (gid {found.group_gid}) exists: the student's account "
            "would get it as its primary group",
        )
    if not creates_accounts:
        return Verdict(
            REFUSED, f"a user {name} (uid {found.uid}) exists; pimq makes accounts on the head only"
        )
    if found.marked:
        return Verdict(PIMQ)
    # Not marked: an earlier pimq's account has everything pimq put there.
    why_not = []
    if found.uid < uid_min:
        why_not.append(f"uid {found.uid} is a system account's")
    own_group = (
        found.primary_group == name
        and found.group_gid == found.gid
        and found.gid is not None
        and found.gid >= gid_min
        and set(found.group_members) <= {name}
    )
    if not own_group:
        why_not.append(f"its primary group {found.primary_group or found.gid} is not its own")
    if found.home != f"{home_base.rstrip('/')}/{name}":
        why_not.append(f"its home is {found.home}")
    if comment is not None and (found.gecos or "") != comment:
        why_not.append(f"its full name is {found.gecos!r}, not {comment!r}")
    if not found.pimq_config:
        why_not.append("it has no pimq config file")
    if why_not:
        return Verdict(
            REFUSED,
            f"a user {name} (uid {found.uid}) exists that pimq did not make "
            f"(not in group {marker}; {'; '.join(why_not)})",
        )
    return Verdict(LEGACY, f"made by an earlier pimq (uid {found.uid}): marked as pimq's")


# --- reading the node -------------------------------------------------------------------------


def login_defs(path: str = "/etc/login.defs") -> tuple[int, int]:
    """(UID_MIN, GID_MIN) of the node (1000, 1000 if unset)."""
    values = {"UID_MIN": 1000, "GID_MIN": 1000}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] in values and fields[1].isdigit():
                    values[fields[0]] = int(fields[1])
    except FileNotFoundError:
        pass
    return values["UID_MIN"], values["GID_MIN"]


def _group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def _group_of(gid: int) -> grp.struct_group | None:
    try:
        return grp.getgrgid(gid)
    except KeyError:
        return None


def has_pimq_config(home: str, config_path: str, name: str, uid: int) -> bool:
    """Whether ``home/config_path`` is a regular file owned by `uid` starting with
    pimq's header for `name`; nothing inside the home is followed if a symlink."""
    parts = [p for p in config_path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return False
    fds = []
    try:
        fds.append(os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        for part in parts[:-1]:
            fds.append(os.open(part, DIR_FLAGS, dir_fd=fds[-1]))
        fd = os.open(parts[-1], FILE_FLAGS, dir_fd=fds[-1])
        fds.append(fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            return False
        header = CONFIG_HEADER.format(name=name).encode("utf-8")
        return os.read(fd, len(header)) == header
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EACCES):
            return False
        raise
    finally:
        for fd in reversed(fds):
            os.close(fd)


def inspect(name: str, marker: str, config_path: str) -> Found:
    """What this node has under `name` (run as root to see inside homes)."""
    group = _group(name)
    marker_group = _group(marker)
    fields: dict = {}
    if group is not None:
        fields.update(group_gid=group.gr_gid, group_members=tuple(group.gr_mem))
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return Found(name, **fields)
    primary = _group_of(pw.pw_gid)
    return Found(
        name,
        uid=pw.pw_uid,
        gid=pw.pw_gid,
        primary_group=primary.gr_name if primary else None,
        gecos=pw.pw_gecos,
        home=pw.pw_dir,
        marked=marker_group is not None and name in marker_group.gr_mem,
        pimq_config=has_pimq_config(pw.pw_dir, config_path, name, pw.pw_uid),
        **fields,
    )
