#!/usr/bin/env python3
"""Print one student's line of a room's handout (after `make reset-password`).

    tools/handout_line.py inventory/<room> NAME

Reads ``inventory/<room>/credentials/handout.csv.txt`` (the default
``pimq_credentials_dir`` and ``pimq_preflight_handout_name``) and prints its
header and the student's row, on the teacher's terminal only: the playbook that
wrote the new password never shows it (no Ansible output holds a secret).
Exit code 1 if the handout or the student's row is missing.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path


def handout_row(text: str, name: str) -> tuple[str, str] | None:
    """(header line, the student's line) of a handout's CSV text, or None."""
    lines = text.splitlines()
    if not lines:
        return None
    for line in lines[1:]:
        fields = next(csv.reader(io.StringIO(line)), [])
        if fields and fields[0] == name:
            return lines[0], line
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("room", type=Path, help="the room's inventory folder")
    parser.add_argument("name", help="the student")
    args = parser.parse_args(argv)
    handout = args.room / "credentials" / "handout.csv.txt"
    try:
        found = handout_row(handout.read_text(encoding="utf-8"), args.name)
    except OSError as exc:
        print(f"cannot read the handout {handout}: {exc.strerror}", file=sys.stderr)
        return 1
    if found is None:
        print(f"no line for {args.name} in {handout}", file=sys.stderr)
        return 1
    print(f"{args.name}'s new handout line (the whole handout: {handout}):")
    print(found[0])
    print(found[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
