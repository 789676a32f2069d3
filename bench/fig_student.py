"""Student modules vs built-in kinds, on the simulated classroom (the real
sandbox needs systemd: ``make classroom provision`` first, PIMQ_CLASSROOM set).

    PYTHONPATH=tests .venv/bin/python bench/fig_student.py [--repeat 3]

Runs, interleaved, as alice on the head: the built-in ``wordcount --top 10``
and the same code as a student module over the 45 MB corpus; ``noop`` and a
no-op module with 2000 shards (shards per second); and one-shard jobs of each
(the difference is what starting the sandboxes costs a job). Prints one JSON
document; the figures go to bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess

from support import nodes

TOP_MODULE = """
import re
from collections import Counter
TOKEN = re.compile(rb"[0-9A-Za-z_]+")  # the built-in's ASCII fast path, as is
def add_arguments(parser):
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=10)
def params(args):
    return {"top": args.top}
def split(args, params, shards):
    from pimq.split import split_file
    return split_file(args.file, shards)
def run(body, params):
    counts = Counter(TOKEN.findall(body))
    return {word.decode("ascii"): n for word, n in counts.items()}
def join(results, params):
    total = Counter()
    for counts in results:
        total.update(counts)
    ranked = sorted(total.items(), key=lambda item: (-item[1], item[0]))
    return [[w, n] for w, n in ranked[: params["top"]]]
"""
NOOP_MODULE = """
def split(args, params, shards):
    return [b""] * shards
def run(body, params):
    return None
def join(results, params):
    return len(results)
"""


def run(room: nodes.Room, command: str) -> dict:
    proc = nodes.ssh(room, "alice", command + " --json", timeout=900)
    return json.loads(proc.stdout)


def put(room: nodes.Room, name: str, data: bytes) -> None:
    ssh = ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS, f"alice@{room.ips[room.head]}"]
    subprocess.run([*ssh, f"cat > {name}"], input=data, check=True, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    room = nodes.load_room()
    nodes.ssh(room, "alice", "pimq sample shakespeare --copies 40 > corpus.txt", timeout=300)
    put(room, "top.py", TOP_MODULE.encode())
    put(room, "noop.py", NOOP_MODULE.encode())
    pairs = {
        "top10": ("pimq run wordcount --top 10 corpus.txt", "pimq run ./top.py corpus.txt"),
        "noop2000": ("pimq run noop --shards 2000", "pimq run ./noop.py --shards 2000"),
        "noop1": ("pimq run noop --shards 1", "pimq run ./noop.py --shards 1"),
    }
    walls: dict[str, dict[str, list[float]]] = {k: {"builtin": [], "module": []} for k in pairs}
    for _ in range(args.repeat):
        for name, (builtin, module) in pairs.items():
            b, m = run(room, builtin), run(room, module)
            if name == "top10":
                assert b["result"] == m["result"], (b["result"], m["result"])
            walls[name]["builtin"].append(b["wall_seconds"])
            walls[name]["module"].append(m["wall_seconds"])
    med = {k: {side: statistics.median(v) for side, v in d.items()} for k, d in walls.items()}
    doc = {
        "repeat": args.repeat,
        "median_wall_seconds": med,
        "top10_module_over_builtin": round(med["top10"]["module"] / med["top10"]["builtin"], 3),
        "noop_shards_per_s": {
            side: round(2000 / med["noop2000"][side], 1) for side in ("builtin", "module")
        },
        "noop_module_share": round(med["noop2000"]["builtin"] / med["noop2000"]["module"], 3),
        "sandbox_start_per_job_s": round(med["noop1"]["module"] - med["noop1"]["builtin"], 3),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
