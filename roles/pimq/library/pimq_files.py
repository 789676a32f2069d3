#!/usr/bin/python
"""Folders, small files, symlinks and pruned folders of one role, converged in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pimq_files
short_description: Converge folders, small text files, symlinks and pruned folders in one call
description:
  - What a role would otherwise do with one M(ansible.builtin.file),
    M(ansible.builtin.template) or M(ansible.builtin.copy) task per path (two
    round trips each for a template or a copy - a stat, then the file module),
    in one module run. For system paths (owned by root, not by users);
    templates are rendered on the control machine, e.g. with
    C(lookup('ansible.builtin.template', 'x.j2')).
  - Order - C(folders), then C(files), then C(links), then C(prune).
  - Files are replaced atomically (a temporary file in the same folder, then a
    rename); a symlink where a file belongs is replaced, not followed.
  - Supports check mode and diff mode. C(changes) lists what changed (never a
    file's content); keep the task C(no_log) when a file holds a secret.
options:
  folders:
    description:
      - Folders that must exist, each with C(path), C(mode) (e.g. C("0755")) and optionally
        C(owner) and C(group) (left alone when not set).
    type: list
    elements: dict
    default: []
  files:
    description:
      - Files with exactly the given content, each with C(path), C(mode), optionally C(owner)
        and C(group), and either C(content) (text) or C(content_b64) (bytes, base64-encoded, for a
        binary file such as a wheel; never shown in a diff).
    type: list
    elements: dict
    default: []
  links:
    description:
      Symbolic links C(path) -> C(src) (replacing a file at C(path); the target need
      not exist).
    type: list
    elements: dict
    default: []
  prune:
    description:
      - Folders to clean, each with C(path), C(patterns) (shell patterns, default all) and
        C(keep) (file names to leave). Other matching files or links in C(path) are removed
        (not sub-folders).
    type: list
    elements: dict
    default: []
author: pimq
"""

EXAMPLES = r"""
- name: Broker configuration
  pimq_files:
    files:
      - path: /etc/rabbitmq/rabbitmq.conf
        content: "{{ lookup('ansible.builtin.template', 'rabbitmq.conf.j2') }}"
        owner: root
        group: root
        mode: "0644"
  notify: Restart rabbitmq-server
"""

RETURN = r"""
changes:
  description:
    One line per change made (or that would be made in check mode). Never contains a
    file's content.
  type: list
  returned: always
changed_paths:
  description: The paths that changed (or would change).
  type: list
  returned: always
"""

import base64
import fnmatch
import grp
import os
import pwd
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pimq_run import ModuleRun, list_of
from ansible.module_utils.pimq_write import replace_file


class Files(ModuleRun):
    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        self.paths: list[str] = []
        self.diffs: list[dict[str, str]] = []

    def change_at(self, path: str, text: str) -> bool:
        """:meth:`change` ``path: text``, and `path` among the changed paths."""
        if path not in self.paths:
            self.paths.append(path)
        return self.change(f"{path}: {text}")

    def outcome(self) -> dict[str, Any]:
        return {**super().outcome(), "changed_paths": self.paths}

    def ids(self, spec: dict[str, Any]) -> tuple[int, int] | None:
        """(uid, gid) wanted, -1 where not set; None for an unknown name in check mode
        (an earlier task would have made it)."""
        try:
            uid = -1 if spec["owner"] is None else pwd.getpwnam(spec["owner"]).pw_uid
            gid = -1 if spec["group"] is None else grp.getgrnam(spec["group"]).gr_gid
        except KeyError:
            if self.check:
                return None
            self.fail(
                f"{spec['path']}: user {spec['owner']} or group {spec['group']} does not exist"
            )
        return uid, gid

    def mode(self, spec: dict[str, Any]) -> int:
        try:
            return int(str(spec["mode"]), 8)
        except ValueError:
            self.fail(f'{spec["path"]}: mode {spec["mode"]!r} is not an octal string like "0644"')

    def attrs(self, path: str, st: os.stat_result, spec: dict[str, Any]) -> None:
        ids, mode = self.ids(spec), self.mode(spec)
        have_ids = (st.st_uid, st.st_gid)
        owned = ids is not None and all(w in (-1, h) for w, h in zip(ids, have_ids, strict=True))
        owner = f"owner {spec['owner'] or '-'}:{spec['group'] or '-'}"
        if not owned and self.change_at(path, owner):
            os.chown(path, *ids, follow_symlinks=False)
        have = stat.S_IMODE(st.st_mode)
        if have != mode and self.change_at(path, f"mode {have:04o} -> {mode:04o}"):
            os.chmod(path, mode)

    def folder(self, spec: dict[str, Any]) -> None:
        path = spec["path"]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not self.change_at(path, "folder created"):
                return
            os.makedirs(path, exist_ok=True)
            st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            self.fail(f"{path} exists and is not a folder")
        self.attrs(path, st, spec)

    def file(self, spec: dict[str, Any]) -> None:
        path = spec["path"]
        binary = spec["content_b64"] is not None
        data = base64.b64decode(spec["content_b64"]) if binary else spec["content"].encode("utf-8")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            self.fail(f"{path} is a folder, not a file")
        old = None
        if st is not None and stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                old = f.read()
        if old == data:
            self.attrs(path, st, spec)
            return
        if self.module._diff and not binary:
            before = (old or b"").decode("utf-8", "replace")
            self.diffs.append(
                dict(before_header=path, after_header=path, before=before, after=spec["content"])
            )
        if not self.change_at(path, "written" if old is None else "updated"):
            return
        uid, gid = self.ids(spec)
        if st is not None:  # an owner or group not set is kept from the file replaced
            uid, gid = (st.st_uid if uid == -1 else uid), (st.st_gid if gid == -1 else gid)
        folder = os.path.dirname(path) or "."
        try:
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            self.fail(f"{path}: folder {folder} does not exist")
        try:
            replace_file(dir_fd, os.path.basename(path), data, uid, gid, self.mode(spec))
        finally:
            os.close(dir_fd)

    def link(self, spec: dict[str, Any]) -> None:
        path, src = spec["path"], spec["src"]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode) and os.readlink(path) == src:
            return
        if st is not None and stat.S_ISDIR(st.st_mode):
            self.fail(f"{path} is a folder, not a link")
        if not self.change_at(path, f"link -> {src}"):
            return
        tmp = f"{path}.pimq-{os.getpid()}"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(src, tmp)
        os.rename(tmp, path)

    def prune(self, spec: dict[str, Any]) -> None:
        path = spec["path"]
        patterns = spec.get("patterns") or ["*"]
        keep = set(spec.get("keep") or [])
        try:
            names = sorted(os.listdir(path))
        except FileNotFoundError:
            return
        for name in names:
            full = os.path.join(path, name)
            if name in keep or not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            if os.path.isdir(full):
                continue
            if self.change_at(full, "removed"):
                os.unlink(full)

    def run(self) -> dict[str, Any]:
        for spec in self.p["folders"]:
            self.folder(spec)
        for spec in self.p["files"]:
            self.file(spec)
        for spec in self.p["links"]:
            self.link(spec)
        for spec in self.p["prune"]:
            self.prune(spec)
        return self.result(**({"diff": self.diffs} if self.diffs else {}))


def main() -> None:
    owned = dict(
        path=dict(type="path", required=True),
        owner=dict(type="str"),
        group=dict(type="str"),
        mode=dict(type="str", required=True),
    )
    module = AnsibleModule(
        argument_spec=dict(
            folders=list_of("dict", options=owned),
            files=list_of(
                "dict",
                options=dict(
                    owned, content=dict(type="str"), content_b64=dict(type="str", no_log=True)
                ),
                mutually_exclusive=[("content", "content_b64")],
                required_one_of=[("content", "content_b64")],
            ),
            links=list_of(
                "dict",
                options=dict(
                    path=dict(type="path", required=True), src=dict(type="str", required=True)
                ),
            ),
            prune=list_of(
                "dict",
                options=dict(
                    path=dict(type="path", required=True),
                    patterns=list_of("str", default=["*"]),
                    keep=list_of("str"),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**Files(module).run())


if __name__ == "__main__":
    main()
