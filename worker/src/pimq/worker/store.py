"""The worker's per-student content-addressed store (under its state directory).

``<root>/<student>/code/<sha256>.py``: a student module's source, named by the
SHA-256 of its bytes, so a module is written once however many jobs use it and
a file can only hold what its name says. Directories are 0700 and files 0600
(pimq's own): the sandbox (a dynamic uid) cannot read them, so the worker
streams the code in.

``<root>/<student>/data/<sha256>``: a dataset the student put
(``pimq data put``), beside ``<sha256>.json`` (its name and size). It is
written as ``.<sha256>.<upload>.part`` while its chunks arrive and renamed
into place only when the bytes hash to the name; the student's datasets
together stay under the admin's quota (:meth:`CodeStore.data_room`). A
student's shards can only name their own student's datasets: the vhost is
the student, and the path is built from it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Dataset:
    digest: str
    name: str
    size: int


class DataStore:
    """The datasets of :class:`CodeStore`'s students (the same root, ``data/``)."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def folder(self, student: str) -> Path:
        if not STUDENT_RE.match(student) or student in (".", ".."):
            raise StoreError(f"not a student name: {student!r}")
        return self.root / student / "data"

    def path(self, student: str, digest_: str) -> Path:
        if not DIGEST_RE.match(digest_):
            raise StoreError(f"not a SHA-256 digest: {digest_!r}")
        return self.folder(student) / digest_

    def has(self, student: str, digest_: str) -> bool:
        try:
            return self.path(student, digest_).is_file()
        except StoreError:
            return False

    def list(self, student: str) -> list[Dataset]:
        folder = self.folder(student)
        found = []
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            return []
        for name in names:
            if not DIGEST_RE.match(name):
                continue
            try:
                size = (folder / name).stat().st_size
                meta = json.loads((folder / f"{name}.json").read_text())
                label = str(meta.get("name", ""))[:200]
            except (OSError, ValueError, AttributeError):
                label = ""
            found.append(Dataset(name, label, size))
        return found

    def usage(self, student: str) -> int:
        """Bytes of the student's datasets, kept and arriving."""
        try:
            return sum(e.stat().st_size for e in os.scandir(self.folder(student)) if e.is_file())
        except FileNotFoundError:
            return 0

    def begin(self, student: str, digest_: str, upload: str) -> Path:
        """A new part file for dataset ``digest_`` arriving in ``upload``."""
        path = self.path(student, digest_)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = path.with_name(f".{digest_}.{upload}.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        return part

    def commit(self, student: str, digest_: str, part: Path, name: str, hashed: str) -> Dataset:
        """Keep the part file under its digest if its bytes (hashed as they came:
        ``hashed``) match it; otherwise remove it and refuse."""
        path = self.path(student, digest_)
        if hashed != digest_:
            part.unlink(missing_ok=True)
            raise StoreError("the bytes that arrived do not match the dataset's checksum")
        meta = path.with_name(f"{digest_}.json")
        tmp = meta.with_name(f".{digest_}.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"name": name}, f)
        os.replace(tmp, meta)
        os.replace(part, path)
        return Dataset(digest_, name, path.stat().st_size)

    def remove(self, student: str, digest_: str) -> bool:
        path = self.path(student, digest_)
        path.with_name(f"{digest_}.json").unlink(missing_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def read(self, student: str, digest_: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a dataset (a shard's range)."""
        with open(self.path(student, digest_), "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        if len(data) != end - start:
            raise StoreError(f"dataset {digest_[:12]} is shorter than the shard's range")
        return data
