"""The sender's connection protocol (common/connection/sender.py), without I/O: the table
of cases (tests/cases/sender_connection.json, also run against the guest page's mirror),
then what only the Python side has: its sentences, the ending of an earlier process's
stream, and what reaches a receiver when the spool dropped audio a slow link had not sent.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sender_connection import WALL_ZERO, check, load

from micwire.common.assembly import Depacketizer
from micwire.common.codecs import Encoder, make_decoder, make_encoder
from micwire.common.connection.sender import (
    Action,
    Close,
    Connect,
    Finish,
    LinkPolicy,
    Notice,
    Send,
    SenderProtocol,
    State,
    Wait,
)
from micwire.common.errors import RefusedError, TransportError, UnreachableError
from micwire.common.framing import Block
from micwire.common.protocol import Accept, Done, Packet, StreamParams
from micwire.common.resume import ResumeEntry
from micwire.common.spool import Spool

CASES = load()


def make_protocol(config: dict[str, Any]) -> SenderProtocol:
    params = StreamParams(
        config["codec"], config["rate_hz"], config["channels"], config["frame_ms"]
    )
    encoders: list[Encoder] = [make_encoder(params)]
    assert encoders[0].pre_skip == config["pre_skip"]  # the page is told the same
    params = dataclasses.replace(params, pre_skip=config["pre_skip"])
    randoms = itertools.cycle(config["random"])
    return SenderProtocol(
        "case",
        params,
        Spool(round(config["spool_s"] * params.rate_hz), params.rate_hz),
        lambda: encoders.pop() if encoders else make_encoder(params),
        stream_id="c0ffee",
        software="test",
        random=lambda: next(randoms),
        policy=LinkPolicy(
            url="ws://rx",
            reconnect=config["reconnect"],
            reconnect_timeout_s=config["reconnect_timeout_s"],
            finish_timeout_s=config["finish_timeout_s"],
            backoff_first_s=config["backoff_first_s"],
            backoff_max_s=config["backoff_max_s"],
            retry_after_max_s=config["retry_after_max_s"],
            silence_timeout_s=config["silence_timeout_s"],
            opus_prime_s=config["opus_prime_s"],
            retry_final_errors_when_resuming=config["retry_final_errors_when_resuming"],
        ),
    )


def error_of(spec: dict[str, Any]) -> TransportError:
    kind = spec["kind"]
    if kind == "unreachable":
        return UnreachableError(f"cannot reach the receiver ({spec['why']})", spec["why"])
    if kind == "refused":
        return RefusedError(spec["reason"], spec["retry"], spec.get("retry_after_s"))
    return TransportError(spec["message"], retry=kind == "retry")


def event(protocol: SenderProtocol, step: dict[str, Any]) -> list[Action]:
    now, kind = step["at"], step["event"]
    if kind == "captured":
        rate, channels = protocol.params.rate_hz, protocol.params.channels
        position = protocol.spool.end + step.get("gap", 0)
        samples = np.full((step["samples"], channels), step.get("value", 1000), np.int16)
        return protocol.captured(now, Block(position, samples, WALL_ZERO + position / rate))
    if kind == "connected":
        accept = Accept(
            "case",
            version=step.get("version", 2),
            resume_timestamp=step["resume"],
            resume_secret=step.get("secret"),
        )
        return protocol.connected(now, accept)
    if kind == "hello":  # the shell sends it: nothing to do but what it keeps
        protocol.hello(WALL_ZERO + now)
        return []
    if kind == "connect_failed":
        return protocol.connect_failed(now, error_of(step["error"]))
    if kind == "ack":
        return protocol.ack(now, step["position"])
    if kind == "done":
        return protocol.done(now, Done(step["timestamp"], step.get("gap_samples", 0)))
    if kind == "closed":
        return protocol.closed(now, step["code"], step.get("reason", ""))
    handlers = {
        "start": protocol.start,
        "stop": protocol.stop,
        "tick": protocol.tick,
        "heard": protocol.heard,
        "retry": protocol.retry,
    }
    return handlers[kind](now) if kind in handlers else []


def describe(action: Action, now: float) -> list[Any]:
    if isinstance(action, Connect):
        return ["connect"]
    if isinstance(action, Wait):
        return ["wait", action.until - now]
    if isinstance(action, Close):
        return ["abort" if action.abort else "close"]
    if isinstance(action, Notice):
        return ["notice", action.kind.value]
    assert isinstance(action, Finish)
    return ["finish", action.state.value]


def run(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step of ``case`` through the Python protocol: what it did after each."""
    protocol = make_protocol(case["config"])
    full, seen = False, []
    for step in case["steps"]:
        full = step.get("full", full) if step["event"] == "link" else full
        actions = event(protocol, step)
        while not full and (more := protocol.writable(WALL_ZERO + step["at"])):
            actions += more
        report = protocol.report
        seen.append(
            {
                "actions": [describe(a, step["at"]) for a in actions if not isinstance(a, Send)],
                "sent": [
                    [packet.timestamp, packet.samples, packet.flags]
                    for packet in (Packet.parse(a.data) for a in actions if isinstance(a, Send))
                ],
                "state": protocol.state.value,
                "attempt": protocol.attempt,
                "deadline": protocol.deadline,
                "report": {
                    "captured": report.samples_captured,
                    "acked": report.acknowledged,
                    "confirmed": report.confirmed,
                    "lost": report.link_lost_samples,
                    "resent": report.resent_samples,
                    "reconnects": report.reconnects,
                    "packets": report.packets_sent,
                },
            }
        )
    return seen


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_table_of_cases(case: dict[str, Any]) -> None:
    check(case, run(case))


# --- what only the Python side has -----------------------------------------------------
RATE = 48000


def protocol_for(codec: str = "pcm", spool_samples: int = RATE, **policy: Any) -> SenderProtocol:
    params = StreamParams(codec, RATE, 1, 20.0)
    encoder = make_encoder(params)
    params = dataclasses.replace(params, pre_skip=encoder.pre_skip)
    return SenderProtocol(
        "kit",
        params,
        Spool(spool_samples, RATE),
        lambda: make_encoder(params),
        stream_id="id",
        software="test",
        random=lambda: 0.5,
        policy=LinkPolicy(url="ws://rx", **policy),
    )


def tone(seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.rint(np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(-1, 1)


def finish_of(actions: list[Action]) -> Finish:
    finishes = [a for a in actions if isinstance(a, Finish)]
    assert len(finishes) == 1, actions
    return finishes[0]


def test_what_waiting_cannot_fix_ends_the_first_connection_with_its_own_error() -> None:
    protocol = protocol_for()
    protocol.start(0.0)
    error = TransportError("the receiver at ws://rx wants a valid token (HTTP 401)")
    finish = finish_of(protocol.connect_failed(0.1, error))
    assert finish.error is error and not finish.ended


def test_the_sentences_of_a_stream_that_did_not_get_through() -> None:
    protocol = protocol_for(reconnect_timeout_s=1.0)
    protocol.start(0.0)
    protocol.captured(0.0, Block(0, tone(1.5), WALL_ZERO))
    unreachable = UnreachableError("cannot reach the receiver at ws://rx", "Connection refused")
    protocol.connect_failed(0.0, unreachable)
    protocol.tick(0.2)
    finish = finish_of(protocol.connect_failed(1.5, unreachable))
    assert str(finish.error) == (
        "could not reach the receiver at ws://rx within 1 s (cannot reach the receiver at "
        "ws://rx); 1.5 s of audio were not delivered"
    )
    protocol = protocol_for()
    protocol.start(0.0)
    protocol.connected(0.1, Accept("kit", resume_timestamp=0, resume_secret="s"))
    protocol.captured(0.2, Block(0, tone(1.0), WALL_ZERO))
    protocol.ack(0.5, RATE // 2)
    protocol.stop(1.0)
    finish = finish_of(protocol.tick(6.0))
    assert finish.state is State.UNDELIVERED
    assert str(finish.error) == (
        "stopped, but the receiver at ws://rx did not confirm the stream within 5 s; "
        "0.5 s of audio may not have been delivered"
    )


@pytest.mark.parametrize(
    ("code", "reason", "words", "ended"),
    [
        (
            1002,
            "timestamp going backwards",
            "the receiver closed the connection: timestamp going backwards",
            True,
        ),
        (1008, "", "the receiver closed the connection", True),
        (None, "", "lost the connection to the receiver", False),
    ],
)
def test_a_connection_that_ends_the_stream_says_how(
    code: int | None, reason: str, words: str, ended: bool
) -> None:
    protocol = protocol_for(reconnect=False)
    protocol.start(0.0)
    protocol.connected(0.1, Accept("kit", resume_timestamp=0, resume_secret="s"))
    finish = finish_of(protocol.closed(0.2, code, reason))
    assert (str(finish.error), finish.ended) == (words, ended)


def test_the_hello_says_when_sample_0_was_captured_even_once_the_spool_dropped_it() -> None:
    """Its clock fields tell the receiver how old the stream is (the receiver starts a new
    stream at most its backlog before now): from sample 0, not from the oldest sample the
    spool still holds."""
    protocol = protocol_for(spool_samples=RATE)
    protocol.start(0.0)
    for k in range(5):  # 5 s captured, 1 s held
        protocol.captured(k, Block(k * RATE, tone(1.0), WALL_ZERO + k))
    assert protocol.spool.start == 4 * RATE
    hello = protocol.hello(WALL_ZERO + 5)
    assert (hello.start_time_us, hello.sent_time_us) == (
        int(WALL_ZERO * 1e6),
        int((WALL_ZERO + 5) * 1e6),
    )
    assert not hello.resuming and hello.stream_id == "id"
    protocol.connected(5.1, Accept("kit", resume_timestamp=0, resume_secret="s3cret"))
    again = protocol.hello(WALL_ZERO + 9)
    assert again.resuming and again.resume_secret == "s3cret"
    assert again.start_time_us == hello.start_time_us


@pytest.mark.parametrize("codec", ["pcm", "opus"])
def test_ending_an_earlier_stream_is_one_last_packet_at_the_resume_point(codec: str) -> None:
    params = StreamParams(codec, RATE, 1, 20.0)
    encoder = make_encoder(params)
    entry = ResumeEntry("ws://rx:80/", "kit", "old", "s3cret", params, 1_700_000_000_000_000)
    protocol = SenderProtocol.ending(entry, encoder, software="test", done_timeout_s=10.0)
    assert protocol.start(0.0) == [Connect()]
    hello = protocol.hello(WALL_ZERO)
    assert (hello.restarted, hello.resume_secret, hello.stream_id) == (True, "s3cret", "old")
    protocol.connected(0.5, Accept("kit", resume_timestamp=5000))
    sent = [Packet.parse(a.data) for a in protocol.writable(WALL_ZERO) if isinstance(a, Send)]
    assert [(p.timestamp, p.samples, p.last) for p in sent] == [(5000, 0, True)]
    assert protocol.writable(WALL_ZERO) == []
    protocol.heard(5.0)
    assert protocol.deadline == 10.5  # done is due 10 s after the LAST packet
    finish = finish_of(protocol.done(1.0, Done(5000)))
    assert (finish.state, finish.report.confirmed) == (State.CONFIRMED, 5000)


def test_ending_an_earlier_stream_gives_up_at_once() -> None:
    entry = ResumeEntry("ws://rx:80/", "kit", "old", "s", StreamParams(), 0)
    make = lambda: SenderProtocol.ending(  # noqa: E731
        entry, make_encoder(entry.params), software="test", done_timeout_s=10.0
    )
    protocol = make()
    protocol.start(0.0)
    refused = RefusedError("held", retry=True, retry_after_s=5.0)  # not waited for
    assert finish_of(protocol.connect_failed(0.1, refused)).error is refused
    protocol = make()
    protocol.start(0.0)
    protocol.connected(0.1, Accept("kit", resume_timestamp=0))
    protocol.writable(WALL_ZERO)
    assert finish_of(protocol.tick(10.1)).state is State.UNDELIVERED


class FullOrNot:
    """A link that takes every packet at once, or none while ``full``."""

    def __init__(self) -> None:
        self.full = False
        self.sent: list[bytes] = []


@pytest.mark.parametrize("codec", ["pcm", "opus"])
@pytest.mark.parametrize("block", [960, 256, 1000])
def test_what_the_spool_dropped_reaches_the_receiver_as_a_gap_of_what_was_counted(
    codec: str, block: int
) -> None:
    """A link slower than the stream: the spool dropped audio a connection had not sent
    yet. What reaches the receiver holds a gap of exactly what the sender counted lost,
    for PCM and Opus. Real encoders and the receiver's own depacketizer."""
    protocol = protocol_for(codec, spool_samples=RATE // 2)
    params = protocol.params
    signal = tone(3.0)
    link = FullOrNot()

    def pump(at: float) -> None:
        while not link.full and (actions := protocol.writable(WALL_ZERO + at)):
            link.sent += [a.data for a in actions if isinstance(a, Send)]

    protocol.start(0.0)
    protocol.connected(0.0, Accept("kit", resume_timestamp=0, resume_secret="s"))
    for position in range(0, len(signal), block):
        link.full = RATE <= position < 2 * RATE  # a second with the link full
        at = position / RATE
        protocol.captured(at, Block(position, signal[position : position + block], at))
        pump(at)
    protocol.stop(3.0)
    pump(3.0)
    assert protocol.state is State.FINISHING
    lost = protocol.report.link_lost_samples
    depacketizer = Depacketizer(params, make_decoder(params))
    segments = [s for data in link.sent for s in depacketizer.push(Packet.parse(data))]
    assert depacketizer.ended and depacketizer.position == len(signal)
    assert 0.4 * RATE < lost < 0.6 * RATE  # a second late, half a second held
    assert depacketizer.stats.gap_samples == lost
    out = np.concatenate(
        [np.zeros((s, 1), np.int16) if isinstance(s, int) else s for s in segments]
    )
    kept = np.ones(len(signal), bool)
    at = 0
    for segment in segments:
        if isinstance(segment, int):
            kept[at : at + segment] = False
        at += segment if isinstance(segment, int) else len(segment)
    if codec == "pcm":
        assert np.array_equal(out[kept], signal[kept])
    else:  # lossy: the tone everywhere but in the gap (no coded silence passing for audio)
        pieces = out[kept, 0][: kept.sum() // 480 * 480].reshape(-1, 480).astype(float)
        assert np.sqrt((pieces**2).mean(axis=1))[2:-2].min() > 0.5 * 8000 / np.sqrt(2)
