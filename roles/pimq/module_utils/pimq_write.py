"""Replacing a file atomically without following symlinks: shared by the
pimq_accounts and pimq_files modules (Ansible ships it to the node with them)."""

from __future__ import annotations

import os


def replace_file(dir_fd: int, name: str, data: bytes, uid: int, gid: int, mode: int) -> None:
    """Put `data` in the file `name` of the open folder `dir_fd`, owned uid:gid
    with `mode`: written to a 0600 temporary file beside it, synced, then
    renamed over `name`. A reader sees the old content or the new, never part
    of it; a symlink at `name` is replaced, never followed."""
    tmp = f".{name}.pimq-{os.getpid()}"
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
