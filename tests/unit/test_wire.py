from __future__ import annotations

import pika
import pytest

from pimq.protocol import wire


def props(**headers):
    base = {
        wire.H_JOB: "0123456789abcdef",
        wire.H_INDEX: 2,
        wire.H_COUNT: 5,
        wire.H_KIND: "wordcount",
        wire.H_PARAMS: '{"word": "more"}',
        wire.H_ATTEMPT: 0,
    }
    base.update(headers)
    base = {k: v for k, v in base.items() if v is not None}
    return pika.BasicProperties(headers=base, reply_to="pimq.result.0123456789abcdef")


def test_round_trip() -> None:
    p = wire.shard_properties(
        "0123456789abcdef", 3, 4, "grep", '{"pattern":"a"}', "pimq.result.0123456789abcdef"
    )
    assert p.delivery_mode == 2
    shard = wire.parse_shard(p, b"body")
    assert (shard.job, shard.index, shard.count, shard.kind) == ("0123456789abcdef", 3, 4, "grep")
    assert shard.params == {"pattern": "a"}
    assert shard.body == b"body" and shard.attempt == 0


def test_headers_as_bytes_are_accepted() -> None:
    shard = wire.parse_shard(props(**{wire.H_JOB: b"0123456789abcdef"}), b"")
    assert shard.job == "0123456789abcdef"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({wire.H_JOB: None}, "pimq-job"),
        ({wire.H_JOB: "../x"}, "pimq-job"),
        ({wire.H_KIND: "../../etc/passwd"}, "pimq-kind"),
        ({wire.H_INDEX: "2"}, "pimq-index"),
        ({wire.H_INDEX: 5}, "outside"),
        ({wire.H_INDEX: -1}, "outside"),
        ({wire.H_PARAMS: "{not json"}, "not JSON"),
        ({wire.H_PARAMS: "[1]"}, "JSON object"),
        ({wire.H_ATTEMPT: -1}, "pimq-attempt"),
    ],
)
def test_bad_messages_have_a_reason(headers, reason) -> None:
    with pytest.raises(wire.BadMessage, match=reason):
        wire.parse_shard(props(**headers), b"")


def test_no_headers_at_all() -> None:
    with pytest.raises(wire.BadMessage):
        wire.parse_shard(pika.BasicProperties(), b"hello")
    with pytest.raises(wire.BadMessage):
        wire.parse_shard(None, b"hello")


def test_reply_to_must_be_a_result_queue() -> None:
    p = props()
    p.reply_to = "amq.gen-xyz"
    with pytest.raises(wire.BadMessage, match="reply_to"):
        wire.parse_shard(p, b"")


def test_result_round_trip() -> None:
    entries = [
        wire.shard_result(1, True, {"x": [1, 2]}, 0.5),
        wire.shard_result(4, False, seconds=0.25, error="boom"),
    ]
    got = wire.decode_results(wire.encode_results("ab12cd34", 'pi"1', entries))
    assert [(r.job, r.index, r.ok, r.value, r.seconds, r.worker, r.error) for r in got] == [
        ("ab12cd34", 1, True, {"x": [1, 2]}, 0.5, 'pi"1', ""),
        ("ab12cd34", 4, False, None, 0.25, 'pi"1', "boom"),
    ]
    assert wire.decode_results(wire.encode_results("ab12cd34", "pi1", [])) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b"not json",
        b"[1, 2]",
        b'{"job": "ab", "results": 3}',
        b'{"job": "ab", "results": [{"ok": true}]}',
        b'{"job": "ab", "results": [{"index": "x", "ok": true}]}',
    ],
)
def test_malformed_results_are_refused(body: bytes) -> None:
    with pytest.raises(wire.BadMessage):
        wire.decode_results(body)


def test_retry_and_dead_properties_keep_the_shard() -> None:
    p = props()
    again = wire.retry_properties(p, 2)
    assert again.headers[wire.H_ATTEMPT] == 2 and again.reply_to == p.reply_to
    dead = wire.dead_properties(p, "job raised\nmore lines", "pi1", "Traceback ...")
    assert dead.headers[wire.H_REASON] == "job raised"
    assert dead.headers[wire.H_TRACEBACK] == "Traceback ..."
    assert dead.headers[wire.H_JOB] == "0123456789abcdef"


def test_control_messages() -> None:
    assert wire.decode_control(wire.encode_cancel("ab12cd34")) == ("ab12cd34", "cancelled")
    assert wire.decode_control(wire.encode_cancel("ab12cd34", "done")) == ("ab12cd34", "done")
    assert wire.decode_control(b"nonsense") is None
    assert wire.decode_control(b'{"cancel": "../x"}') is None


def test_job_of_reads_only_the_job_header() -> None:
    job = "ab12cd34ef56ab12"
    props = wire.shard_properties(job, 0, 1, "noop", "{}", "pimq.result.x")
    assert wire.job_of(props) == job
    assert wire.job_of(pika.BasicProperties(headers={"pimq-job": job.encode()})) == job
    assert wire.job_of(pika.BasicProperties(headers={"pimq-job": b"\xff"})) == "\ufffd"
    assert wire.job_of(pika.BasicProperties(headers={"pimq-job": 7})) is None
    assert wire.job_of(pika.BasicProperties()) is None
    assert wire.job_of(None) is None
