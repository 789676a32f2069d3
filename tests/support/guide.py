"""The student guide (docs/lab/*.md) as a test script: its console blocks, run and checked.

A fenced block whose info string is ``console`` is what a student types and
sees: lines starting with ``$ `` are commands (one bash per block, so ``&``,
``wait`` and variables carry over within the block), the lines below a
command are its output (stdout and stderr). An expected line matches an
actual line exactly, except that ``…`` in it matches any text and a line
``...`` matches any number of lines. A command must exit 0 (a page that
shows a failing command writes ``|| echo "exit $?"``).

``console teacher`` blocks are what the teacher does (e.g. restart a broker
while the class watches): the runner hands them to a callback instead.
Other blocks (``python``, ``sh``, ``text``) are shown, not run; a page that
wants a file written uses a ``console`` block with a here-document.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "lab"
MARK = "@@pimq-guide@@"


@dataclass
class Command:
    text: str  # the command line(s), without the "$ "
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    page: str
    line: int
    role: str  # "student" or "teacher"
    commands: list[Command]


def blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```console(?:\s+(teacher))?\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        i += 1
        commands: list[Command] = []
        while i < len(lines) and lines[i] != "```":
            line = lines[i]
            if line.startswith("$ "):
                commands.append(Command(line[2:]))
            elif (line == ">" or line.startswith("> ")) and commands and not commands[-1].expected:
                commands[-1].text += "\n" + line[2:]  # a continued command (here-document)
            elif commands:
                commands[-1].expected.append(line)
            i += 1
        yield Block(path.name, start, m.group(1) or "student", commands)
        i += 1


def line_matches(expected: str, actual: str) -> bool:
    if "…" not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual) is not None


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` against ``actual``: line by line, ``...`` for any lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(output_matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and line_matches(head, actual[0]) and output_matches(rest, actual[1:])


def script(block: Block) -> str:
    """One bash script for the block; before each command a marker line."""
    parts = []
    for n, command in enumerate(block.commands):
        parts.append(f"echo '{MARK} {n}'\n{command.text}\necho \"{MARK} rc=$?\"")
    return "exec 2>&1\n" + "\n".join(parts) + "\nwait\n"


@dataclass
class Failure:
    block: Block
    command: Command
    actual: list[str]
    rc: str

    def __str__(self) -> str:
        return (
            f"{self.block.page}:{self.block.line}: $ {self.command.text}\n"
            f"  exit {self.rc}\n  expected:\n"
            + "".join(f"    {e}\n" for e in self.command.expected)
            + "  got:\n"
            + "".join(f"    {a}\n" for a in self.actual)
        )


def check(block: Block, output: str) -> list[Failure]:
    chunks: dict[int, list[str]] = {}
    rcs: dict[int, str] = {}
    current = -1
    for line in output.splitlines():
        if line.startswith(MARK + " rc="):
            rcs[current] = line.split("=", 1)[1]
        elif line.startswith(MARK + " "):
            current = int(line.split()[-1])
            chunks[current] = []
        elif current >= 0:
            chunks[current].append(line)
    failures = []
    for n, command in enumerate(block.commands):
        actual = chunks.get(n, [])
        rc = rcs.get(n, "missing")
        if rc != "0" or not output_matches(command.expected, actual):
            failures.append(Failure(block, command, actual, rc))
    return failures


def run_page(
    page: str,
    run_bash: Callable[[str], str],
    teacher: Callable[[Block], None] | None = None,
    replace: dict[str, str] | None = None,
) -> list[Failure]:
    """Run a page's blocks in order with ``run_bash(script) -> output``."""
    failures: list[Failure] = []
    for block in blocks(GUIDE / page):
        for command in block.commands:
            for old, new in (replace or {}).items():
                command.text = command.text.replace(old, new)
        if block.role == "teacher":
            assert teacher is not None, f"{page}:{block.line}: a teacher block needs a teacher"
            teacher(block)
            continue
        failures += check(block, run_bash(script(block)))
        if failures:
            break  # later blocks build on this one
    return failures


def local_bash(env: dict[str, str], cwd: Path, timeout: float = 300) -> Callable[[str], str]:
    def run(text: str) -> str:
        out = subprocess.run(
            ["bash", "-c", text],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        return out.stdout

    return run
