#!/usr/bin/env python3
"""Every Debian package the roles install, one per line: the one list the
simulated Pi's image downloads (tests/harness/image/Dockerfile) and so the
classroom's local mirror serves (tests/harness/mirror.py).

The roles install packages only through ``roles/pimq/tasks/packages_*.yml``
(``pimq_packages_wanted``), each role from lists in its defaults named
``*_packages``; this prints the union of those lists (a role's derived
``*_all_packages`` is made of them). tests/unit/test_debs.py checks that every
``pimq_packages_wanted`` in the roles' tasks is covered.

    debs.py            the packages, sorted
    debs.py --vars     which defaults variable lists each

Needs PyYAML (make setup's .venv)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def package_lists(roles: Path = REPO / "roles") -> dict[str, list[str]]:
    """Each ``*_packages`` list of plain names in the roles' defaults."""
    found: dict[str, list[str]] = {}
    for defaults in sorted(roles.glob("*/defaults/main.yml")):
        for name, value in (yaml.safe_load(defaults.read_text()) or {}).items():
            if name.endswith("_packages") and isinstance(value, list):
                found[name] = [str(v) for v in value]
    return found


def packages(roles: Path = REPO / "roles") -> list[str]:
    return sorted({p for names in package_lists(roles).values() for p in names})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vars", action="store_true", help="show which variable lists each")
    args = parser.parse_args(argv)
    if args.vars:
        for name, names in package_lists().items():
            print(f"{name}: {' '.join(names) or '(none)'}")
    else:
        print("\n".join(packages()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
