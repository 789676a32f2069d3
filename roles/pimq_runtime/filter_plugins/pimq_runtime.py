"""The runtime's filters: where the room's job modules are on the control
machine, and the ``files`` of the runtime's ``pimq_files`` call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ansible.errors import AnsibleFilterError


def _names(value: Any, what: str) -> list[str]:
    """`value` as a list of strings, or a clear error naming `what`."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise AnsibleFilterError(f"{what} must be a list of strings, got {type(value).__name__}")
    bad = [item for item in value if not isinstance(item, str)]
    if bad:
        raise AnsibleFilterError(f"{what} must be a list of strings, got {bad[0]!r}")
    return list(value)


def job_module_paths(modules: Sequence[str], directory: str) -> list[str]:
    """The path on the control machine of each of `modules` (``pimq_job_modules``):
    as given when absolute, else ``<directory>/<module>``."""
    names = _names(modules, "pimq_job_module_paths: pimq_job_modules")
    return [m if os.path.isabs(m) else f"{directory}/{m}" for m in names]


def runtime_files(
    modules: Sequence[str], sources: Sequence[str], root: str, wheel: str, wheel_b64: str
) -> list[dict[str, str]]:
    """``pimq_files`` ``files`` of the runtime, each owned root:root, mode 0644: the
    wheel (`wheel`: its path on the control machine; `wheel_b64`: its content,
    base64) as ``<root>/wheels/<wheel's name>``, then each of `modules`
    (``pimq_job_modules``) as ``<root>/jobs/<module's file name>`` with the
    source at the same place in `sources`."""
    names = _names(modules, "pimq_runtime_files: pimq_job_modules")
    texts = _names(sources, "pimq_runtime_files: the job modules' sources")
    if len(texts) != len(names):
        raise AnsibleFilterError(
            f"pimq_runtime_files: {len(names)} job module(s) but {len(texts)} source(s)"
        )
    owned = {"owner": "root", "group": "root", "mode": "0644"}
    files = [
        {"path": f"{root}/wheels/{os.path.basename(wheel)}", **owned, "content_b64": wheel_b64}
    ]
    for name, text in zip(names, texts, strict=True):
        files.append({"path": f"{root}/jobs/{os.path.basename(name)}", **owned, "content": text})
    return files


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "pimq_job_module_paths": job_module_paths,
            "pimq_runtime_files": runtime_files,
        }
