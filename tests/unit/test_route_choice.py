"""Which Pis a routed job gets (pimq.client.route.choose), from roll-call answers."""

from __future__ import annotations

import pytest

from pimq.client.route import PiChoice, choose
from pimq.errors import UsageError
from pimq.protocol.wire import Here, decode_here, decode_route, encode_here, encode_route

D = "ab" * 32


def room(**busy: int) -> dict[str, Here]:
    return {
        name: Here(name, b, 4, (D,) if name in ("pi2", "pi3") else ()) for name, b in busy.items()
    }


def test_n_takes_the_least_busy():
    answers = room(pi1=4, pi2=0, pi3=2, pi4=1)
    assert choose(PiChoice(count=2), answers, "s") == ["pi2", "pi4"]


def test_the_dataset_holders_come_first():
    answers = room(pi1=0, pi2=3, pi3=4)
    assert choose(PiChoice(count=2, prefer=D), answers, "s") == ["pi2", "pi3"]
    assert choose(PiChoice(holders=True, prefer=D), answers, "s") == ["pi2", "pi3"]
    nobody = {n: Here(n) for n in ("pi1", "pi5")}
    assert choose(PiChoice(holders=True, prefer=D), nobody, "s") == ["pi1", "pi5"]


def test_names_are_kept_as_given_and_checked():
    answers = room(pi1=0, pi2=0)
    assert choose(PiChoice(names=("pi2", "pi1")), answers, "s") == ["pi2", "pi1"]
    with pytest.raises(
        UsageError, match=r"no Pi named pi3 serves vhost 's' now \(serving: pi1, pi2\)"
    ):
        choose(PiChoice(names=("pi3",)), answers, "s")
    with pytest.raises(UsageError, match=r"--pis 3: only 2 Pi\(s\)"):
        choose(PiChoice(count=3), answers, "s")


def test_roll_call_answers_and_routes_round_trip():
    here = Here("pi-7.lab", 2, 4, (D,))
    assert decode_here(encode_here("0123456789abcdef", here)) == ("0123456789abcdef", here)
    body = encode_route("0123456789abcdef", "pimq.job.0123456789abcdef", ["pi2", "pi1"])
    assert decode_route(body) == ("0123456789abcdef", "pimq.job.0123456789abcdef", ("pi1", "pi2"))
    assert decode_route(body.replace(b"pimq.job.", b"pimq.tasks.")) is None
    assert decode_here(b'{"cancel": "x"}') is None
