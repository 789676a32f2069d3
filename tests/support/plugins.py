"""Loading a file that is not a package module as Python would import it: the
roles' filter plugins (as Ansible loads them) and the repository's tools."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load(path: Path, name: str) -> ModuleType:
    """The module in ``path``, registered in sys.modules as ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def filter_plugin(role: str, name: str) -> ModuleType:
    """roles/<role>/filter_plugins/<name>.py."""
    return load(REPO / "roles" / role / "filter_plugins" / f"{name}.py", name)
