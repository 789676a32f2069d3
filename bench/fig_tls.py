"""The cost of TLS: the word count and no-op shards over plaintext AMQP and over
AMQPS (the room CA, host name checked), side by side on the same broker.

Each variant has its own vhost and its own fleet of ``k`` workers (one process
each); the plaintext fleet and client use the broker's plaintext port, the TLS
ones its AMQPS listener, as a provisioned room does (``ca`` in both configs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corpus import WORD
from measure import interleave, pimq_variant, say
from pimq_fleet import Fleet
from support.private_broker import Broker

#: vhosts of the plaintext and TLS fleets (the other figures use the first few)
PLAIN_WC, TLS_WC, PLAIN_NOOP, TLS_NOOP = 40, 41, 42, 43


def bench_tls(
    broker: Broker, out: Path, text: Path, expected: int, k: int, shards: int, repeat: int
) -> dict[str, Any]:
    if not broker.tls_port:
        raise RuntimeError("the TLS figure needs a broker started with tls=True")
    say(
        f"\n== TLS: word count ({text.stat().st_size / 1e6:.1f} MB) and {shards} no-op shards, "
        f"{k} workers, plaintext vs TLS"
    )
    fleets: list[Fleet] = []
    results: dict[str, Any] = {"workers": k, "shards": shards, "bytes": text.stat().st_size}
    try:
        for name, index, tls in (
            ("plain_wc", PLAIN_WC, False),
            ("tls_wc", TLS_WC, True),
            ("plain_noop", PLAIN_NOOP, False),
            ("tls_noop", TLS_NOOP, True),
        ):
            vhost = broker.students[index].vhost
            fleets.append(Fleet(broker, out / f"tls-{name}", [vhost], k, 1, tls=tls).start())
        wc = ("wordcount", "--word", WORD, str(text))
        noop = ("noop", "--shards", str(shards))
        plain_wc = pimq_variant("plain", f"word count, plaintext, {k} workers", broker,
                                PLAIN_WC, out, fleets[0], *wc)  # fmt: skip
        tls_wc = pimq_variant("tls", f"word count, TLS, {k} workers", broker,
                              TLS_WC, out, fleets[1], *wc, tls=True)  # fmt: skip
        interleave([plain_wc, tls_wc], broker, expected, repeat)
        plain_noop = pimq_variant("plain", f"{shards} no-op shards, plaintext", broker,
                                  PLAIN_NOOP, out, fleets[2], *noop)  # fmt: skip
        tls_noop = pimq_variant("tls", f"{shards} no-op shards, TLS", broker,
                                TLS_NOOP, out, fleets[3], *noop, tls=True)  # fmt: skip
        interleave([plain_noop, tls_noop], broker, shards, repeat)
    finally:
        for fleet in fleets:
            fleet.stop()
    for key, variants in (("wordcount", (plain_wc, tls_wc)), ("noop", (plain_noop, tls_noop))):
        results[key] = {v.name: v.summary() for v in variants}
        plain, tls = variants
        results[key]["tls_over_plain"] = tls.seconds() / plain.seconds()
        say(
            f"  {key}: plaintext {plain.seconds():.3f} s, TLS {tls.seconds():.3f} s "
            f"(x{results[key]['tls_over_plain']:.2f})"
        )
    return results
