from __future__ import annotations

import json
import subprocess
from pathlib import Path


def grep_count(path: Path, word: str) -> int:
    out = subprocess.run(
        f"grep -ow -- {word} {path} | wc -l", shell=True, capture_output=True, text=True,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    )
    return int(out.stdout)


def test_wordcount_end_to_end(cli, student, start_worker, tmp_path):
    text = Path("/work/shared/data/tinyshakespeare.txt")
    start_worker([student.vhost])
    out = cli.run("run", "wordcount", "--word", "more", str(text), "--json", "--shards", "7")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["result"] == grep_count(text, "more")
    assert doc["shards"] == 7
