"""A routed job's Pis (``pimq run --pis N`` or ``--pis pi1,pi2``).

The controller (:mod:`pimq.client.controller`) publishes a routed job's shards
to the job's own queue ``pimq.job.<id>`` instead of ``pimq.tasks``, and this
module decides which Pis consume it:

1. **Roll call.** A ``rollcall`` broadcast on ``pimq.control`` reaches every
   worker serving the vhost; each answers to the job's result queue with its
   name, how many of its processes are busy, and which of the student's
   datasets it holds (:class:`pimq.protocol.wire.Here`).
2. **Choice.** ``--pis pi1,pi2``: those (an unknown name is an error naming the
   Pis that answered); ``--pis N``: the N least busy (an error if fewer
   answered); datasets held count first (:attr:`PiChoice.prefer`).
3. **Route.** The job queue is declared and bound, and ``{"route": job,
   "queue": ..., "pis": [...]}`` announced on ``pimq.control``, again every
   :data:`ANNOUNCE_EVERY` s: a Pi named there consumes the queue (its lease
   lasts 30 s after the last announcement), the others do not.
4. **Nothing lost.** A Pi that dies gives its unacked shards back to the job
   queue (the broker does that), where the route's other Pis take them. Every
   :data:`ANNOUNCE_EVERY` s the controller counts the queue's consumers; after
   two short counts it calls the roll again and replaces the Pis that did not
   answer (``--pis N``: back to N; named Pis: only when none of them is left,
   by one other Pi, said on stderr).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pimq.errors import UsageError
from pimq.protocol import topology
from pimq.protocol.wire import PI_NAME_RE, Here, decode_here, encode_rollcall, encode_route

if TYPE_CHECKING:
    from pimq.client.controller import Controller

#: how long a roll call waits for the Pis' answers at most
ROLLCALL_WAIT = 2.0
#: the route is announced again (and its consumers counted) this often
ANNOUNCE_EVERY = 5.0
#: short consumer counts in a row before the roll is called again
STRIKES = 2


@dataclass(frozen=True)
class PiChoice:
    """What ``--pis`` asked for: ``count`` Pis, or the Pis ``names``."""

    count: int = 0
    names: tuple[str, ...] = ()
    #: a dataset's digest: Pis that hold it are chosen first
    prefer: str = ""
    #: no ``--pis``, a job over a dataset: every Pi that holds it (all if none does)
    holders: bool = False

    @property
    def wanted(self) -> int:
        return len(self.names) or self.count


def parse_pis(text: str) -> PiChoice:
    """``--pis``'s value: a number of Pis, or Pi names separated by commas."""
    text = text.strip()
    if text.isdigit():
        count = int(text)
        if count < 1:
            raise UsageError("--pis: give at least 1 Pi")
        return PiChoice(count=count)
    names = tuple(n.strip() for n in text.split(","))
    bad = [n for n in names if not PI_NAME_RE.match(n)]
    if bad or not names:
        raise UsageError(
            f"--pis {text!r}: give a number of Pis (--pis 2) or Pi names separated "
            "by commas (--pis pi1,pi2)"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"--pis {text!r} names a Pi twice")
    return PiChoice(names=names)


def choose(choice: PiChoice, answers: dict[str, Here], vhost: str) -> list[str]:
    """The Pis of the route, from the roll call's ``answers``; a
    :class:`UsageError` if the room cannot give what ``choice`` asks."""
    serving = ", ".join(sorted(answers)) or "none"
    if choice.holders:
        if not answers:
            raise UsageError(f"no Pi serves vhost {vhost!r} now")
        held = sorted(n for n, h in answers.items() if choice.prefer in h.datasets)
        return held or sorted(answers)
    if choice.names:
        unknown = [n for n in choice.names if n not in answers]
        if unknown:
            raise UsageError(
                f"--pis: no Pi named {', '.join(unknown)} serves vhost {vhost!r} now "
                f"(serving: {serving})"
            )
        return list(choice.names)
    if choice.count > len(answers):
        raise UsageError(
            f"--pis {choice.count}: only {len(answers)} Pi(s) serve vhost {vhost!r} now "
            f"(serving: {serving})"
        )
    return rank(choice, list(answers.values()))[: choice.count]


def rank(choice: PiChoice, candidates: list[Here]) -> list[str]:
    """Candidates best first: holding the preferred dataset, then least busy
    for their size; ties in random order (so students spread over the room)."""
    shuffled = random.sample(candidates, len(candidates))
    prefer = choice.prefer
    shuffled.sort(key=lambda h: (bool(prefer) and prefer not in h.datasets, h.busy / h.processes))
    return [h.worker for h in shuffled]


class Router:
    """The Pis of one routed job, on its controller's connection and IOLoop."""

    def __init__(self, ctl: Controller, choice: PiChoice) -> None:
        self.ctl = ctl
        self.choice = choice
        self.queue = topology.job_queue(ctl.job)
        self.pis: list[str] = []
        self.answers: dict[str, Here] = {}
        self.calling: Callable[[], None] | None = None  # roll call under way: its end
        self.channel: Any = None  # the channel the job queue was declared on
        self.strikes = 0
        self.timer = False

    # -- the controller's hooks -------------------------------------------
    def ready_on(self, channel: Any) -> bool:
        """True once the job queue is declared on ``channel`` and the route announced."""
        return self.pis != [] and self.channel is channel

    def prepare(self, channel: Any, consumers: int, then: Callable[[], None]) -> None:
        """Choose the Pis (first time) and declare the job queue on ``channel``;
        ``then()`` once it is there."""
        if self.pis:
            self._declare(channel, then)
            return

        def chosen() -> None:
            try:
                self.pis = choose(self.choice, self.answers, self.ctl.cfg.vhost)
            except UsageError as exc:
                self.ctl._fail(exc)
                return
            self._declare(channel, then)

        self._rollcall(consumers, chosen)

    def on_result(self, body: bytes) -> bool:
        """True if ``body`` was a roll-call answer (kept for the roll call under way)."""
        answer = decode_here(body)
        if answer is None:
            return False
        job, here = answer
        if job == self.ctl.job and self.calling is not None:
            self.answers[here.worker] = here
            if self._enough():
                self._end_rollcall()
        return True

    def holds(self, digest: str) -> bool:
        """Does a Pi of the route hold dataset ``digest`` (by the roll call)?"""
        return any(digest in self.answers[p].datasets for p in self.pis if p in self.answers)

    # -- roll call ----------------------------------------------------------
    def _rollcall(self, expected: int, then: Callable[[], None]) -> None:
        self.answers = {}
        self.expected = expected
        self.calling = then
        body = encode_rollcall(self.ctl.job, self.ctl.queue)
        self.ctl.publish(topology.CONTROL, "", body, topology.CONTROL_PROPS)
        self.ctl.ioloop.call_later(ROLLCALL_WAIT, self._end_rollcall)

    def _enough(self) -> bool:
        if len(self.answers) < self.expected:
            return False
        if self.choice.holders:
            return True
        if self.choice.names:
            return all(n in self.answers for n in self.choice.names)
        return len(self.answers) >= self.choice.count

    def _end_rollcall(self) -> None:
        then, self.calling = self.calling, None
        if then is not None and not self.ctl.finishing:
            then()

    # -- the route ----------------------------------------------------------
    def _declare(self, channel: Any, then: Callable[[], None]) -> None:
        def declared(_frame: Any) -> None:
            if channel is not self.ctl.channel or self.ctl.finishing:
                return
            self.channel = channel
            self.announce()
            if not self.timer:
                self.timer = True
                self.ctl.ioloop.call_later(ANNOUNCE_EVERY, self._again)
            then()

        topology.declare_job_queue(channel, self.queue, declared)

    def announce(self) -> None:
        body = encode_route(self.ctl.job, self.queue, self.pis)
        self.ctl.publish(topology.CONTROL, "", body, topology.CONTROL_PROPS)

    def _again(self) -> None:
        ch = self.ctl.channel
        if self.ctl.finishing:
            return
        self.ctl.ioloop.call_later(ANNOUNCE_EVERY, self._again)
        if ch is None or not ch.is_open or ch is not self.channel or self.calling is not None:
            return
        self.announce()
        # declared again, not passively: that also keeps an unconsumed queue
        # (every Pi of the route gone, none to replace them) from expiring
        ch.queue_declare(
            queue=self.queue,
            durable=True,
            arguments=topology.job_queue_arguments(),
            callback=self._on_counted,
        )

    def _on_counted(self, frame: Any) -> None:
        if frame.method.consumer_count >= len(self.pis):
            self.strikes = 0
            return
        self.strikes += 1
        if self.strikes >= STRIKES and self.calling is None and not self.ctl.finishing:
            self.strikes = 0
            self._rollcall(len(self.pis), self._replace)

    def _replace(self) -> None:
        """After a roll call: Pis of the route that did not answer are gone."""
        alive = [p for p in self.pis if p in self.answers]
        gone = [p for p in self.pis if p not in self.answers]
        if not gone:
            return
        others = [h for name, h in self.answers.items() if name not in self.pis]
        named = self.choice.names or self.choice.holders
        wanted = (0 if alive else 1) if named else self.choice.wanted
        added = rank(self.choice, others)[: max(0, wanted - len(alive))]
        if not alive and not added:
            return  # nobody there: the shards wait in the job queue for the route's Pis
        self.pis = alive + added
        self.ctl._say(
            f"pimq: {', '.join(gone)} no longer answer(s): the job's shards go to "
            f"{', '.join(self.pis)}"
        )
        self.announce()
