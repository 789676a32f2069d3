"""pi: Monte Carlo estimate of pi, reproducible for a given seed.

The samples are drawn in fixed blocks, each with its own generator seeded
from (seed, block number), so the estimate does not depend on the number of
shards nor on which worker ran which block.
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

from pimq.jobs.split import split_range

HELP = "estimate pi from --samples random points (seeded, reproducible)"

BLOCK = 100_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=10_000_000, help="points (10,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    if args.samples < 1:
        raise ValueError("--samples must be at least 1")
    return {"samples": args.samples, "seed": args.seed}


def split(args: argparse.Namespace, job_params: dict[str, Any], shards: int) -> list[bytes]:
    blocks = -(-job_params["samples"] // BLOCK)
    return [json.dumps([a, b]).encode() for a, b in split_range(0, blocks, shards)]


def hits_in_block(seed: int, block: int, samples: int) -> int:
    rnd = random.Random(f"pimq-pi:{seed}:{block}").random
    hits = 0
    for _ in range(samples):
        x = rnd()
        y = rnd()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits


def run(body: bytes, job_params: dict[str, Any]) -> int:
    first, stop = json.loads(body)
    samples, seed = job_params["samples"], job_params["seed"]
    return sum(hits_in_block(seed, b, min(BLOCK, samples - b * BLOCK)) for b in range(first, stop))


def join(results: list[int], job_params: dict[str, Any]) -> dict[str, Any]:
    hits = sum(results)
    return {
        "pi": 4.0 * hits / job_params["samples"],
        "hits": hits,
        "samples": job_params["samples"],
    }


def render(result: dict[str, Any], job_params: dict[str, Any]) -> str:
    return f"pi ~ {result['pi']:.6f} ({result['hits']} of {result['samples']} points inside)"
