"""The one-process baselines. Prints one JSON line: the result and the seconds it took.

``wordcount FILE WORD --how bytes|str|pimq``
    bytes: ``len(re.findall(rb"\\bWORD\\b", data))`` over the whole file
        (ASCII word characters; the same count as grep on an ASCII text).
    str:   the same over the decoded text (Unicode word characters).
    pimq:  pimq's own per-shard function ``pimq.jobs.wordcount.count_word`` on
        the whole file in one process (grep's exact word semantics).
``pi SAMPLES [--seed S] [--processes K]``
    pimq's ``pi`` job code over all sample blocks in one process; with
    ``--processes K``, the blocks cut in K equal ranges run by K forked
    processes at once (no broker, no pimq): the best any runtime could do
    with K cores of this machine, the ceiling of the parallel efficiency.

Timing starts before the file is opened and stops when the count is known.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import re
import time


def wordcount(path: str, word: str, how: str) -> int:
    if how == "bytes":
        with open(path, "rb") as f:
            data = f.read()
        return len(re.findall(rb"\b" + re.escape(word.encode()) + rb"\b", data))
    if how == "str":
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return len(re.findall(r"\b" + re.escape(word) + r"\b", text))
    from pimq.jobs.wordcount import count_word

    with open(path, "rb") as f:
        data = f.read()
    return count_word(data, word)


def pi(samples: int, seed: int, processes: int = 1) -> int:
    from pimq.jobs import pi as pi_job

    blocks = -(-samples // pi_job.BLOCK)
    params = {"samples": samples, "seed": seed}
    cuts = [blocks * i // processes for i in range(processes + 1)]
    bodies = [json.dumps([a, b]).encode() for a, b in itertools.pairwise(cuts)]
    if processes == 1:
        return pi_job.run(bodies[0], params)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return sum(pool.starmap(pi_job.run, [(b, params) for b in bodies]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    wc = sub.add_parser("wordcount")
    wc.add_argument("file")
    wc.add_argument("word")
    wc.add_argument("--how", choices=("bytes", "str", "pimq"), default="bytes")
    p = sub.add_parser("pi")
    p.add_argument("samples", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    result = (
        wordcount(args.file, args.word, args.how)
        if args.what == "wordcount"
        else pi(args.samples, args.seed, args.processes)
    )
    print(json.dumps({"result": result, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
