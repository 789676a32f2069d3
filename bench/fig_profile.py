"""``--profile``: where the time goes, py-spy profiles (``spy.py``) of a pimq
word count and a no-op job, controller and workers at once."""

from __future__ import annotations

from pathlib import Path

from corpus import WORD
from measure import measure, pimq_variant, say
from pimq_fleet import Fleet
from support.private_broker import Broker


def bench_profile(broker: Broker, out: Path, text: Path, k: int, shards: int) -> str:
    from spy import profile_job

    say("\n== profiles (py-spy): word count and no-op shards")
    parts = []
    for name, args, seconds in (
        ("wordcount", ("wordcount", "--word", WORD, str(text)), 8),
        ("noop", ("noop", "--shards", str(shards)), 10),
    ):
        with Fleet(broker, out / f"profile-{name}", [broker.students[5].vhost], k, 1) as fleet:
            v = pimq_variant(name, name, broker, 5, out, fleet, *args)
            measure(v, broker, None)  # warm-up
            parts.append(
                profile_job(name, out, [p.pid for p in fleet.procs], v.cmd, v.env or {}, seconds)
            )
    text_md = "\n".join(parts)
    (out / "profiles.md").write_text(text_md)
    say(text_md)
    return text_md
