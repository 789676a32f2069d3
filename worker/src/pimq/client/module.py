"""A student's own job module on the head (``pimq run ./module.py``).

Before anything is published the module is compiled and imported here, as the
student, and must define ``split``, ``run`` and ``join``: a syntax error, a
failing import or a missing function is one :class:`~pimq.errors.UsageError`
line naming the file and the line (exit 2, nothing queued). ``split``,
``params``, ``join`` and ``render`` then run here; ``run`` runs on the Pis in
a sandbox (:mod:`pimq.sandbox`), from the source announced with the job.
"""

from __future__ import annotations

import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

from pimq.errors import UsageError
from pimq.protocol.wire import MAX_CODE, code_digest

REQUIRED = ("split", "run", "join")


@dataclass(frozen=True)
class StudentModule:
    module: types.ModuleType
    path: Path
    source: str
    digest: str

    @property
    def filename(self) -> str:
        return self.path.name


def looks_like_path(word: str) -> bool:
    """``pimq run WORD``: a student's module rather than a kind name."""
    return "/" in word or word.endswith(".py")


def _where(path: Path, exc: BaseException) -> str:
    """``FILE, line N`` of the innermost frame in the student's file."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return f"{path}, line {lines[-1]}" if lines else str(path)


def load_module(word: str) -> StudentModule:
    path = Path(word)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the module: {exc.strerror}") from None
    if len(raw) > MAX_CODE:
        raise UsageError(f"{path}: a module may be at most {MAX_CODE} bytes")
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise UsageError(f"{path}, line {exc.lineno}: SyntaxError: {exc.msg}") from None
    name = f"pimq_student_{path.stem}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        line = traceback.format_exception_only(type(exc), exc)[-1].strip()
        raise UsageError(f"{_where(path, exc)}: {line}") from None
    for fn in REQUIRED:
        if not callable(getattr(module, fn, None)):
            raise UsageError(
                f"{path}, line 1: the module defines no {fn}() "
                f"(a job module needs {', '.join(f + '()' for f in REQUIRED)})"
            )
    return StudentModule(module, path, source, code_digest(raw))
