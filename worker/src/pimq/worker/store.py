"""The worker's per-student content-addressed store (under its state directory).

``<root>/<student>/code/<sha256>.py``: a student module's source, named by the
SHA-256 of its bytes, so a module is written once however many jobs use it and
a file can only hold what its name says. Directories are 0700 and files 0600
(pimq's own): the sandbox (a dynamic uid) cannot read them, so the worker
streams the code in. Datasets of the per-student store (#9) go beside
``code/`` under the same ``<student>`` directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pimq.protocol.wire import DIGEST_RE, MAX_CODE
from pimq.protocol.wire import code_digest as digest

DEFAULT_ROOT = "/var/lib/pimq/store"
STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StoreError(ValueError):
    """A name or a content that the store refuses; ``str(exc)`` says why."""


class CodeStore:
    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def path(self, student: str, code: str) -> Path:
        if not STUDENT_RE.match(student) or student in (".", ".."):
            raise StoreError(f"not a student name: {student!r}")
        if not DIGEST_RE.match(code):
            raise StoreError(f"not a SHA-256 digest: {code!r}")
        return self.root / student / "code" / f"{code}.py"

    def has(self, student: str, code: str) -> bool:
        return self.path(student, code).is_file()

    def put(self, student: str, code: str, source: bytes) -> Path:
        """Keep ``source`` under its digest ``code`` (refused if it does not match)."""
        if len(source) > MAX_CODE:
            raise StoreError(f"module of {len(source)} bytes over the limit of {MAX_CODE}")
        if digest(source) != code:
            raise StoreError("module source does not match its digest")
        path = self.path(student, code)
        if path.is_file():
            return path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{code}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(source)
        os.replace(tmp, path)
        return path

    def get(self, student: str, code: str) -> str:
        source = self.path(student, code).read_bytes()
        if digest(source) != code:
            raise StoreError("stored module does not match its digest")
        return source.decode("utf-8")
