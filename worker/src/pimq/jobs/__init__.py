"""Job kinds: the built-in ones and the admin's custom modules.

The job-kind API
================

A job kind is a Python module named after the kind (``[a-z][a-z0-9_]*``).
Built-in kinds live in this package; custom kinds are files
``/opt/pimq/jobs/<kind>.py`` installed on every node by the admin (the
directory can be changed with the environment variable ``PIMQ_JOBS_DIR``).
Students choose a kind by name, or run their own module with the same API
(``pimq run ./mine.py``, :mod:`pimq.client.module`): then ``split``,
``params``, ``join`` and ``render`` run on the head as the student and
``run`` runs on the Pis inside a sandbox (:mod:`pimq.sandbox`), where the
module is imported again with the standard library and the Pi's Debian
python3 packages but without pimq: import ``pimq.split`` inside ``split()``.
Its ``run`` must return JSON of at most 16 MiB.

A module defines:

``HELP: str``
    One line for ``pimq run --help``.
``add_arguments(parser: argparse.ArgumentParser) -> None`` *(optional)*
    The kind's own options and positional arguments.
``params(args: argparse.Namespace) -> dict`` *(optional, default {})*
    The JSON-serialisable parameters every shard receives. Validate here
    (e.g. compile a regex, check a file exists) and raise ``ValueError``
    with a one-line message for the student. Runs on the head node.
``split(args, params: dict, shards: int) -> Sequence[bytes]``
    The shard bodies, at most ``shards`` of them (at least one): a list, or
    any sequence that reads each body when indexed (``pimq.split.split_file``
    does so for files). Runs on the head node. ``pimq.split`` has helpers
    for text and ranges.
``run(body: bytes, params: dict) -> JSON value``
    Process one shard. Runs on a worker, in a pool process. An exception
    makes the shard fail; it is retried, then dead-lettered.
``join(results: list, params: dict) -> JSON value``
    Combine the shard results (in shard order) into the job's result.
``render(result, params: dict) -> str`` *(optional)*
    The human-readable line(s) printed by ``pimq run`` (default: ``str``).

Minimal example, ``/opt/pimq/jobs/length.py``::

    HELP = "total length of the message arguments"

    def add_arguments(parser):
        parser.add_argument("words", nargs="+")

    def split(args, params, shards):
        return [w.encode() for w in args.words]

    def run(body, params):
        return len(body)

    def join(results, params):
        return sum(results)
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from pimq.protocol.wire import KIND_RE

BUILTIN = ("wordcount", "grep", "primes", "pi", "sleep", "noop")
DEFAULT_JOBS_DIR = "/opt/pimq/jobs"

_cache: dict[str, ModuleType] = {}


class UnknownKind(LookupError):
    """No built-in kind and no module in the jobs directory of that name."""


def jobs_dir() -> Path:
    return Path(os.environ.get("PIMQ_JOBS_DIR") or DEFAULT_JOBS_DIR)


def custom_kinds() -> list[str]:
    try:
        names = [p.stem for p in jobs_dir().glob("*.py")]
    except OSError:
        return []
    return sorted(n for n in names if KIND_RE.match(n) and n not in BUILTIN)


def available() -> list[str]:
    return [*BUILTIN, *custom_kinds()]


def load(kind: str) -> ModuleType:
    """Import the module of a job kind (cached). Raise :class:`UnknownKind`."""
    module = _cache.get(kind)
    if module is not None:
        return module
    if not KIND_RE.match(kind):
        raise UnknownKind(kind)
    if kind in BUILTIN:
        module = importlib.import_module(f"pimq.jobs.{kind}")
    else:
        path = jobs_dir() / f"{kind}.py"
        if not path.is_file():
            raise UnknownKind(kind)
        name = f"pimq_custom_job_{kind}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UnknownKind(kind)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    for required in ("split", "run", "join"):
        if not callable(getattr(module, required, None)):
            raise UnknownKind(f"{kind} (module lacks {required}())")
    _cache[kind] = module
    return module


def exists(kind: str) -> bool:
    """Cheap check, without importing, whether a kind can be loaded here."""
    if kind in _cache or kind in BUILTIN:
        return True
    return bool(KIND_RE.match(kind)) and (jobs_dir() / f"{kind}.py").is_file()


def params(module: ModuleType, args: object) -> dict:
    fn = getattr(module, "params", None)
    return fn(args) if fn else {}


def render(module: ModuleType, result: object, job_params: dict) -> str:
    fn = getattr(module, "render", None)
    return fn(result, job_params) if fn else str(result)
