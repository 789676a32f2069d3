from __future__ import annotations

from pathlib import Path

import pytest

from pimq import jobs


def test_builtins_load() -> None:
    for kind in jobs.BUILTIN:
        module = jobs.load(kind)
        assert callable(module.run) and callable(module.join) and callable(module.split)


def test_custom_kind_from_jobs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "double.py").write_text(
        "HELP = 'x2'\n"
        "def split(args, params, shards):\n    return [b'1', b'2']\n"
        "def run(body, params):\n    return 2 * int(body)\n"
        "def join(results, params):\n    return sum(results)\n"
    )
    (tmp_path / "broken.py").write_text("def run(body, params):\n    return 1\n")
    monkeypatch.setenv("PIMQ_JOBS_DIR", str(tmp_path))
    assert "double" in jobs.available()
    module = jobs.load("double")
    assert module.join([module.run(b, {}) for b in module.split(None, {}, 2)], {}) == 6
    with pytest.raises(jobs.UnknownKind):
        jobs.load("broken")
    with pytest.raises(jobs.UnknownKind):
        jobs.load("nothere")
    assert not jobs.exists("../double")
    with pytest.raises(jobs.UnknownKind):
        jobs.load("../double")
