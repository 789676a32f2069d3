"""sleep: simulated work, as in the classic lab worker.

Each message is one shard; a worker sleeps ``--per-char`` seconds for every
character of it. With ``--shards N`` there are exactly N shards, the messages
taken in turn.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

HELP = "simulated work: sleep --per-char seconds per character of each message"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("messages", nargs="+", help="one shard per message")
    parser.add_argument("--per-char", type=float, default=1.0, help="seconds per character (1)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    if args.per_char < 0:
        raise ValueError("--per-char must not be negative")
    return {"per_char": args.per_char}


def split(args: argparse.Namespace, job_params: dict[str, Any], shards: int) -> list[bytes]:
    count = getattr(args, "shards", None) or len(args.messages)
    return [args.messages[i % len(args.messages)].encode() for i in range(count)]


def run(body: bytes, job_params: dict[str, Any]) -> int:
    chars = len(body.decode("utf-8", "replace"))
    time.sleep(chars * float(job_params["per_char"]))
    return chars


def join(results: list[int], job_params: dict[str, Any]) -> int:
    return sum(results)


def render(result: int, job_params: dict[str, Any]) -> str:
    return f"slept for {result} characters at {job_params['per_char']} s each"
