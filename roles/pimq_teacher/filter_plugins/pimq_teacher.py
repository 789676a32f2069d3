"""The teacher's filters: what ``python -m pimq.teacher`` answered, in words."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def teacher_result(run: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object a ``pimq.teacher`` command printed (its registered
    result); a run that printed none is ``{"error": ...}`` with its last line
    of stderr (the tool never prints a secret)."""
    if not isinstance(run, Mapping) or run.get("skipped"):
        return {"changed": False}
    out = str(run.get("stdout") or "").strip()
    try:
        doc = json.loads(out.splitlines()[-1]) if out else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        doc.setdefault("changed", False)
        return doc
    err = str(run.get("stderr") or "").strip().splitlines()
    why = err[-1] if err else f"exit code {run.get('rc')}"
    return {"error": f"python -m pimq.teacher failed: {why}", "changed": False}


def stop_lines(doc: Mapping[str, Any], student: str, check: bool = False) -> list[str]:
    """What ``make stop-job`` says: one line per job stopped (or that would be)."""
    if "error" in doc:
        return [f"{student}: {doc['error']}; nothing was changed"]
    attached = {j["job"]: j.get("attached", False) for j in doc.get("jobs", [])}
    told = set(doc.get("stopped", []))
    lines = []
    for job in doc.get("stopping", []):
        if check:
            lines.append(f"{student}: job {job} would be stopped")
        elif job not in told:
            lines.append(f"{student}: job {job} had just ended (nothing left to stop)")
        elif attached.get(job):
            lines.append(
                f"{student}: job {job} stopped: the workers drop its shards, and its "
                "pimq run exits saying it was stopped by the teacher (exit code 5)"
            )
        else:
            lines.append(
                f"{student}: job {job} stopped: the workers drop its shards (no pimq run "
                "was waiting for it)"
            )
    return lines


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pimq_teacher_result": teacher_result, "pimq_teacher_stop_lines": stop_lines}
