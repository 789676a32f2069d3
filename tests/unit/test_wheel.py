"""The wheel is byte-reproducible: Ansible copies it, a new hash means "changed"."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "worker"
# How the pimq_runtime role builds the wheel it ships.
BUILD_WHEEL = REPO / "roles" / "pimq_runtime" / "files" / "build_wheel.py"


def build(out: Path) -> Path:
    subprocess.run(
        [sys.executable, str(BUILD_WHEEL), str(out)], cwd=WORKER, check=True, capture_output=True
    )
    (wheel,) = out.glob("pimq-*.whl")
    return wheel


def test_wheel_is_reproducible(tmp_path: Path) -> None:
    first = build(tmp_path / "a")
    (WORKER / "src" / "pimq" / "__init__.py").touch()
    second = build(tmp_path / "b")
    digest = [hashlib.sha256(w.read_bytes()).hexdigest() for w in (first, second)]
    assert digest[0] == digest[1]
    names = zipfile.ZipFile(first).namelist()
    assert "pimq/jobs/wordcount.py" in names
    # the teacher's page's templates are package data: they must travel too
    for template in ("base.html", "login.html", "index.html"):
        assert f"pimq/page/templates/{template}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    entry_points = zipfile.ZipFile(first).read("pimq-0.1.0.dist-info/entry_points.txt").decode()
    assert "pimq = pimq.cli:main" in entry_points
