"""noop: empty shards that do nothing (measures the per-shard overhead)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "empty shards that do nothing (per-shard overhead)"


def split(args: argparse.Namespace, job_params: dict[str, Any], shards: int) -> list[bytes]:
    return [b""] * shards


def run(body: bytes, job_params: dict[str, Any]) -> None:
    return None


def join(results: list[Any], job_params: dict[str, Any]) -> int:
    return len(results)


def render(result: int, job_params: dict[str, Any]) -> str:
    return f"{result} no-op shards"
