"""``pimq run ./module.py`` on the head: the module's own --help, --local, and
a broken module refused before anything is published (exit 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pimq.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "wordcount_module.py"
CORPUS = ROOT / "data" / "tinyshakespeare.txt"


def test_the_modules_own_options_are_in_its_help(capsys):
    try:
        main(["run", str(EXAMPLE), "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "--word WORD, -w WORD  the word to count" in out
    assert "--shard-timeout S" in out and "--local" in out


def test_local_runs_every_shard_here_and_equals_grep(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PIMQ_CONFIG", str(tmp_path / "none.yaml"))  # not needed, not read
    grep = subprocess.run(
        ["grep", "-ow", "the", str(CORPUS)], capture_output=True, env={"LC_ALL": "C"}, check=True
    )
    expected = grep.stdout.count(b"\n")
    code = main(["run", str(EXAMPLE), str(CORPUS), "--word", "the", "--local", "--shards", "9"])
    assert code == 0
    assert capsys.readouterr().out == f"the: {expected}\n"


def test_a_broken_module_is_one_line_and_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def split(a, p, n):\n    return []\ndef join(r, p): return r\n")
    assert main(["run", str(bad), "x"]) == 2
    err = capsys.readouterr().err
    needs = "(a job module needs split(), run(), join())"
    assert err == f"pimq: {bad}, line 1: the module defines no run() {needs}\n"
