"""The guide runner's parsing and matching (tests/support/guide.py), on made-up pages."""

from __future__ import annotations

from pathlib import Path

from support import guide

PAGE = """# A page

```console
$ echo one; echo two
one
two
$ cat > f.txt <<'EOF'
> a
>
> b
> EOF
$ wc -l < f.txt
3
```

```python
print("shown, not run")
```

```console teacher
$ sudo systemctl restart rabbitmq-server
```
"""


def test_blocks(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    student, teacher = guide.blocks(page)
    assert student.role == "student" and teacher.role == "teacher"
    assert [c.text for c in student.commands] == [
        "echo one; echo two",
        "cat > f.txt <<'EOF'\na\n\nb\nEOF",
        "wc -l < f.txt",
    ]
    assert [c.expected for c in student.commands] == [["one", "two"], [], ["3"]]
    assert [c.text for c in teacher.commands] == ["sudo systemctl restart rabbitmq-server"]


def test_matching() -> None:
    assert guide.output_matches(["a", "b"], ["a", "b"])
    assert not guide.output_matches(["a", "b"], ["a", "b", "c"])
    assert not guide.output_matches(["a"], [])
    assert guide.output_matches(["...", "c"], ["a", "b", "c"])
    assert guide.output_matches(["a", "...", "c"], ["a", "c"])
    assert guide.output_matches(["job …: 3 shard(s)"], ["job 0f3a: 3 shard(s)"])
    assert not guide.output_matches(["job …: 3 shard(s)"], ["job 0f3a: 4 shard(s)"])
    assert guide.line_matches("a.b…", "a.b and more") and not guide.line_matches("a.b", "axb")


def test_a_block_run_and_checked(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    student = next(guide.blocks(page))
    run = guide.local_bash({"PATH": "/usr/bin:/bin"}, tmp_path)
    assert guide.check(student, run(guide.script(student))) == []
    student.commands[0].expected = ["one", "three"]
    student.commands[2].text = "false"
    failures = guide.check(student, run(guide.script(student)))
    assert [(f.command.text, f.rc, f.actual) for f in failures] == [
        ("echo one; echo two", "0", ["one", "two"]),
        ("false", "1", []),
    ]
