"""primes: count the primes in ``[start, stop)`` with a segmented sieve."""

from __future__ import annotations

import argparse
import json
from math import isqrt
from typing import Any

from pimq.jobs.split import split_range

HELP = "count the primes below STOP (from --start, default 0)"

BLOCK = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stop", type=int, help="count primes below this number")
    parser.add_argument("--start", type=int, default=0, help="count from here (default 0)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    if args.start < 0 or args.stop < args.start:
        raise ValueError("need 0 <= --start <= STOP")
    return {"start": args.start, "stop": args.stop}


def split(args: argparse.Namespace, job_params: dict[str, Any], shards: int) -> list[bytes]:
    ranges = split_range(job_params["start"], job_params["stop"], shards)
    return [json.dumps([a, b]).encode() for a, b in ranges]


def small_primes(limit: int) -> list[int]:
    """Primes <= limit."""
    if limit < 2:
        return []
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for p in range(2, isqrt(limit) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
    return [i for i, flag in enumerate(sieve) if flag]


def count_primes(start: int, stop: int) -> int:
    start = max(start, 2)
    if stop <= start:
        return 0
    base = small_primes(isqrt(stop - 1))
    total = 0
    for lo in range(start, stop, BLOCK):
        hi = min(lo + BLOCK, stop)
        seg = bytearray([1]) * (hi - lo)
        for p in base:
            if p * p >= hi:
                break
            first = max(p * p, -(-lo // p) * p)
            if first < hi:
                seg[first - lo :: p] = bytes(len(range(first - lo, hi - lo, p)))
        total += seg.count(1)
    return total


def run(body: bytes, job_params: dict[str, Any]) -> int:
    start, stop = json.loads(body)
    return count_primes(int(start), int(stop))


def join(results: list[int], job_params: dict[str, Any]) -> int:
    return sum(results)


def render(result: int, job_params: dict[str, Any]) -> str:
    return f"{result} primes in [{job_params['start']}, {job_params['stop']})"
