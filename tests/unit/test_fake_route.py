"""Routed jobs (``pimq run --pis``) on the in-process broker: a room of three
named workers and a real controller on one virtual IOLoop. Which Pis take a
routed job's shards, the errors for a room that cannot give what is asked, a
Pi dying mid-job (nothing lost), fairness between students, the worker's
window bound, retries staying on the route. Real-broker versions:
tests/integration/test_route.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fake_amqp import InlinePool, Room, make_room, start_worker

from pimq.client import route
from pimq.client.controller import Controller
from pimq.client.route import PiChoice, parse_pis
from pimq.config import StudentConfig
from pimq.errors import JobFailed, UsageError
from pimq.protocol import topology

STUDENT = StudentConfig(vhost="s1", user="stud1", password="pw1", host="fake")
OTHER = StudentConfig(vhost="s2", user="stud2", password="pw2", host="fake")


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return make_room(monkeypatch, tmp_path)


def three_pis(room: Room, vhosts: tuple[str, ...] = ("s1",), **cfg) -> dict:
    return {n: start_worker(room, vhosts, 2, name=n, **cfg) for n in ("pi1", "pi2", "pi3")}


def squares(count: int):
    return lambda _consumers: [str(i).encode() for i in range(count)]


def controller(count: int, pis: str | None, cfg: StudentConfig = STUDENT, kind: str = "square"):
    choice = parse_pis(pis) if pis is not None else None
    return Controller(cfg, kind, "{}", squares(count), progress=False, pis=choice)


def kill(worker) -> None:
    """The Pi is gone: its connections drop and it never comes back."""
    for link in worker.links:
        link.connect = lambda: None
        if link.conn is not None:
            link.conn.drop("Pi unplugged")


def test_pis_1_runs_every_shard_on_one_pi_and_leaves_its_queue_empty(room):
    three_pis(room)
    ctl = controller(40, "1")
    outcome = ctl.run()
    assert [outcome.results[i].value for i in range(40)] == [i * i for i in range(40)]
    assert len(outcome.per_worker) == 1, outcome.per_worker
    assert sum(outcome.per_worker.values()) == 40
    assert ctl.router is not None and list(outcome.per_worker) == ctl.router.pis
    queue = room.broker.queue("s1", topology.job_queue(outcome.job))
    assert not queue.messages and not queue.consumers  # left to expire
    assert queue.arguments == topology.job_queue_arguments()
    # not one shard went through pimq.tasks
    assert not [m for _v, m in room.broker.published if m.routing_key == topology.TASKS]


def test_named_pis_take_the_shards_the_others_none(room):
    three_pis(room)
    outcome = controller(60, "pi1,pi3").run()
    assert set(outcome.per_worker) <= {"pi1", "pi3"}
    assert sum(outcome.per_worker.values()) == 60
    assert [outcome.results[i].value for i in range(60)] == [i * i for i in range(60)]


def test_pis_n_defaults_to_four_shards_per_chosen_pi(room):
    three_pis(room)
    outcome = Controller(
        STUDENT, "square", "{}", lambda n: [b"%d" % i for i in range(4 * n)], pis=PiChoice(2)
    ).run()
    assert outcome.count == 8


def test_an_unknown_pi_name_is_a_clear_error(room):
    three_pis(room)
    with pytest.raises(
        UsageError, match=r"no Pi named pi9 serves vhost 's1' now \(serving: pi1, pi2, pi3\)"
    ):
        controller(4, "pi1,pi9").run()
    assert room.broker.depth("s1", topology.TASKS) == 0


def test_more_pis_than_the_room_is_a_clear_error(room):
    three_pis(room)
    with pytest.raises(UsageError, match=r"--pis 4: only 3 Pi\(s\) serve vhost 's1' now"):
        controller(4, "4").run()


@pytest.mark.parametrize(
    "text, error",
    [("0", "at least 1"), ("pi1,,pi2", "Pi names separated"), ("pi1,pi1", "twice")],
)
def test_bad_pis_values_are_refused(text, error):
    with pytest.raises(UsageError, match=error):
        parse_pis(text)


def test_a_pi_that_dies_mid_job_loses_nothing(room, monkeypatch):
    monkeypatch.setattr(InlinePool, "seconds_per_shard", 0.5)
    pis = three_pis(room)
    ctl = controller(30, "2")
    victims: list[str] = []

    def unplug_one() -> None:
        assert ctl.router is not None and ctl.router.pis
        victims.append(ctl.router.pis[0])
        kill(pis[victims[0]])

    room.loop.call_later(4.0, unplug_one)
    outcome = ctl.run()
    assert victims
    assert [outcome.results[i].value for i in range(30)] == [i * i for i in range(30)]
    assert sum(outcome.per_worker.values()) == 30


def test_the_only_pi_of_a_job_dies_and_another_takes_its_shards(room, monkeypatch, capsys):
    monkeypatch.setattr(InlinePool, "seconds_per_shard", 0.5)
    pis = three_pis(room)
    ctl = controller(20, "1")
    first: list[str] = []

    def unplug() -> None:
        assert ctl.router is not None
        first.extend(ctl.router.pis)
        kill(pis[first[0]])

    room.loop.call_later(3.0, unplug)
    outcome = ctl.run()
    assert [outcome.results[i].value for i in range(20)] == [i * i for i in range(20)]
    assert ctl.router.pis != first
    assert set(outcome.per_worker) == {first[0], ctl.router.pis[0]}
    assert "no longer answer" in capsys.readouterr().err


def test_a_routed_job_shares_a_pi_fairly_with_another_students_job(room):
    worker = start_worker(room, ("s1", "s2"), 2, name="pi1")
    routed = controller(16, "pi1")
    plain = controller(16, None, OTHER)
    # both jobs' shards wait on the Pi together: the routed one is started on
    # the loop that the other's run() drives
    room.loop.call_later(0, routed.connect)
    outcome = plain.run()
    room.loop.run(lambda: len(routed.results) == 16)
    assert sorted(outcome.results) == list(range(16))
    order = [vhost for vhost, _job, _i in worker.pool.order]
    # every shard of both ran (a shard preempted for the other student's runs again)
    ran = {(vhost, i) for vhost, _job, i in worker.pool.order}
    assert ran == {(v, i) for v in ("s1", "s2") for i in range(16)}
    # both students' shards alternate while both wait (round-robin over vhosts)
    middle = order[4:20]
    assert middle.count("s1") >= 6 and middle.count("s2") >= 6, " ".join(order)


def test_two_routed_jobs_share_the_links_window(room, monkeypatch):
    monkeypatch.setattr(InlinePool, "seconds_per_shard", 0.1)
    worker = start_worker(room, ("s1",), 2, name="pi1", prefetch=4)
    link = worker.links[0]
    seen: list[tuple[int, int]] = []  # (queues consumed, their windows added up)

    def look() -> None:
        consumers = [c for c in link.channel.consumers.values() if not c.auto_ack]
        seen.append((len(consumers), sum(c.prefetch for c in consumers)))
        held = len(link.channel.unacked)
        assert held <= 4, held

    for t in range(1, 200):
        room.loop.call_later(t * 0.05, look)
    first, second = controller(30, "pi1"), controller(30, "pi1")
    room.loop.call_later(0, first.connect)
    outcome = second.run()
    room.loop.run(lambda: len(first.results) == 30)
    assert sorted(outcome.results) == list(range(30))
    assert (2, 4) in seen, seen  # both routes consumed at once, two shards each
    assert all(total <= 4 for _n, total in seen), seen
    # the routes over, pimq.tasks is consumed again with the whole window
    room.loop.run(lambda: link.consumer_tag is not None)
    assert not link.route_tags


def test_a_retried_routed_shard_goes_back_to_its_jobs_queue(room):
    three_pis(room)
    with pytest.raises(JobFailed, match="bad shard"):
        controller(1, "1", kind="boom").run()
    shards = [m for _v, m in room.broker.published if m.exchange == topology.TASKS]
    assert len(shards) >= 2  # the first publish and at least one retry
    assert all(topology.is_job_queue(m.routing_key) for m in shards), shards


def test_a_pi_that_hears_no_announcement_leaves_the_route(room, monkeypatch):
    pis = three_pis(room)
    monkeypatch.setattr(route, "ANNOUNCE_EVERY", 10_000.0)  # the controller goes quiet
    ctl = controller(4, "pi2")
    outcome = ctl.run()
    assert list(outcome.per_worker) == ["pi2"]
    link = pis["pi2"].links[0]
    # the route of a job that ended is left at once ("done" on pimq.control)
    assert not link.routes and not link.route_tags
    link.routes["0123456789abcdef"] = ("pimq.job.0123456789abcdef", 0.0)
    link.expire_routes(route.ANNOUNCE_EVERY)
    assert not link.routes
