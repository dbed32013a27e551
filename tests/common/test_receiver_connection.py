"""The receiver's side of one connection, without I/O: every odd case, event by event."""

from __future__ import annotations

import json

import pytest

from micwire.common import outcome
from micwire.common.connection.receiver import (
    Admit,
    Clock,
    Close,
    Deliver,
    Finish,
    Limits,
    Phase,
    ReceiverConnection,
    Release,
    Send,
)
from micwire.common.errors import FrameError
from micwire.common.protocol import (
    FLAG_LAST,
    Accept,
    Done,
    Hello,
    Packet,
    Pong,
    StreamParams,
)


def hello(**changes: object) -> str:
    data = json.loads(Hello("kit", StreamParams(), 0, 0, stream_id="id").serialize())
    data.update(changes)
    return json.dumps(data)


def streaming(**changes: object) -> ReceiverConnection:
    conn = ReceiverConnection(0.0, Limits(hello_timeout_s=10, idle_timeout_s=30))
    (admit,) = conn.receive_text(hello(**changes), 0.1)
    assert isinstance(admit, Admit) and admit.hello.stream == "kit"
    (send,) = conn.admitted(Accept("kit", None, resume_timestamp=0, resume_secret="s"), 0.2)
    assert json.loads(send.text)["type"] == "accept" and conn.phase is Phase.STREAMING
    return conn


def audio(ts: int = 0, last: bool = False) -> bytes:
    flags = FLAG_LAST if last else 0
    return Packet(0, ts, 960, b"\0" * 1920, flags=flags).serialize()


def test_a_stream_from_hello_to_done() -> None:
    conn = streaming()
    (deliver,) = conn.receive_binary(audio(), 1.0)
    assert isinstance(deliver, Deliver) and deliver.packet.samples == 960
    assert conn.delivered(ended=False) == []
    conn.receive_binary(audio(960, last=True), 1.1)
    assert conn.delivered(ended=True) == [Finish(outcome.COMPLETE)]
    done = Done(1920, 0, "kit.wav")
    assert conn.finished(outcome.COMPLETE, done) == [
        Send(done.serialize()),
        Close(1000, "complete"),
    ]
    assert conn.connection_closed(1000) == []  # finished: nothing more to release


def test_a_restarted_sender_ends_its_stream_as_restarted() -> None:
    conn = streaming(resuming=True, resume_secret="s", restarted=True)
    conn.receive_binary(audio(last=True), 1.0)
    assert conn.delivered(ended=True) == [Finish(outcome.RESTARTED)]
    actions = conn.finished(outcome.RESTARTED, Done(960, 0, None))
    assert actions[-1] == Close(1000, "ended")


def test_finalising_that_fails_closes_1011_with_the_reason() -> None:
    conn = streaming()
    conn.receive_binary(audio(last=True), 1.0)
    conn.delivered(ended=True)
    failed = outcome.failed("no space left on device (writing kit.wav)")
    assert conn.finished(failed, None) == [Close(1011, failed.text)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{nope", "not valid JSON"),
        (hello(protocol=9), "unsupported protocol version 9"),
        (hello(rate_hz=10**9), "sample rate 1000000000 Hz is out of range"),
    ],
)
def test_a_bad_hello_is_refused_for_good(text: str, reason: str) -> None:
    conn = ReceiverConnection(0.0)
    send, close = conn.receive_text(text, 0.1)
    assert isinstance(send, Send) and json.loads(send.text)["type"] == "refuse"
    assert isinstance(close, Close) and close.code == 1008 and reason in close.reason
    assert conn.phase is Phase.DONE and conn.connection_closed(1000) == []


def test_binary_before_the_hello_and_no_hello_in_time() -> None:
    conn = ReceiverConnection(0.0, Limits(hello_timeout_s=0.3))
    assert conn.tick(0.2, 0, 0) == []
    _, close = conn.tick(0.31, 0, 0)
    assert close == Close(1008, "no hello within 0.3 s")
    other = ReceiverConnection(0.0)
    assert other.receive_binary(b"\x01", 0.1)[-1] == Close(
        1008, "expected the hello as a text message (JSON)"
    )


def test_a_refusal_for_now_says_when_to_try_again() -> None:
    conn = ReceiverConnection(0.0)
    conn.receive_text(hello(), 0.1)
    send, close = conn.refused("receiver is full (2 streams)", True, 4.5)
    assert json.loads(send.text) == {
        "type": "refuse",
        "reason": "receiver is full (2 streams)",
        "retry": True,
        "retry_after_s": 4.5,
    }
    assert close == Close(1013, "receiver is full (2 streams)")


@pytest.mark.parametrize(
    ("code", "here", "why"),
    [
        (None, None, "connection lost (no close frame)"),
        (1000, None, "sender closed without end-of-stream"),
        (1001, None, "connection closed (1001)"),
        (None, 1006, "connection lost (no close frame)"),
        (None, 1001, "connection closed (1001)"),
    ],
)
def test_a_connection_gone_releases_its_stream_for_its_sender(
    code: int | None, here: int | None, why: str
) -> None:
    conn = streaming()
    assert conn.connection_closed(code, here) == [Release(outcome.lost(why), True)]
    assert conn.outcome is not None and conn.outcome.resumable


def test_a_malformed_packet_is_the_senders_fault() -> None:
    conn = streaming()
    close, release = conn.receive_binary(b"\x07" + audio()[1:], 1.0)
    assert close.code == 1002 and "protocol version 7" in close.reason  # type: ignore[union-attr]
    assert isinstance(release, Release) and not release.lost
    assert release.outcome.text.startswith("closed: ") and not release.outcome.resumable
    assert conn.connection_closed(None) == []  # released once


def test_text_after_the_hello_and_too_big_a_message() -> None:
    conn = streaming()
    close, _ = conn.receive_text("hi", 1.0)
    assert isinstance(close, Close) and close.code == 1002 and "got a text message" in close.reason
    other = streaming()
    close, release = other.fault(FrameError("a message too large for any packet"))
    assert close == Close(1002, "a message too large for any packet")
    assert isinstance(release, Release) and release.outcome.ending is outcome.Ending.REFUSED


def test_silence_closes_the_connection_and_keeps_the_stream_for_its_sender() -> None:
    conn = streaming()
    conn.receive_binary(Packet(0, 0, 0, b"").serialize(), 5.0)  # empty: no alibi
    assert conn.tick(30.3, 0, 0) == [
        Close(1013, "no audio for 30 s"),
        Release(outcome.lost("no audio for 30 s"), True),
    ]


def test_acknowledgements_once_a_second_and_not_into_a_full_socket() -> None:
    conn = streaming()
    (ack,) = conn.tick(0.3, 960, 0)
    assert json.loads(ack.text) == {"type": "ack", "timestamp": 960}  # type: ignore[union-attr]
    assert conn.tick(0.9, 1920, 0) == []  # within the second
    assert conn.tick(1.4, 2880, 10_000) == []  # the socket is backed up: not now
    assert conn.tick(2.5, 3840, 0) != []
    old = streaming(protocol=1)
    assert old.tick(5.0, 960, 0) == []  # version 1: no acknowledgements


def test_a_receiver_error_closes_1011_for_good() -> None:
    conn = streaming()
    result = outcome.error("internal error: ValueError: boom")
    assert conn.failed(result, "internal error: ValueError") == [
        Close(1011, "internal error: ValueError"),
        Release(result, False),
    ]


def test_a_sender_that_answers_pings_is_pinged_and_its_pongs_measure_its_clock() -> None:
    """Its hello says ``"clock": true``: a ping a second (stamped with the wall clock),
    each pong one measurement; a pong for no ping of ours (forged, from the future, or
    long ago), or a second one for the same ping, measures nothing; a text that is no
    pong is a protocol error, as any text is."""
    conn = streaming(clock=True)
    sent = [a for a in conn.tick(1.0, 0, 0, wall=1000.0) if isinstance(a, Send)]
    pings = [json.loads(a.text) for a in sent if json.loads(a.text)["type"] == "ping"]
    assert pings == [{"type": "ping", "t1_us": 1_000_000_000}]
    assert not any(json.loads(a.text)["type"] == "ping" for a in conn.tick(1.5, 0, 0, 1000.5))
    assert any(json.loads(a.text)["type"] == "ping" for a in conn.tick(2.0, 0, 0, 1001.0))
    # a ping waits while the socket's buffer holds audio: it would measure the queue
    assert conn.tick(3.0, 0, 5000, 1002.0) == []
    pong = Pong(1_000_000_000, 1_005_010_000, 1_005_011_000).serialize()
    (measured,) = conn.receive_text(pong, 2.1, wall=1000.021)
    assert isinstance(measured, Clock)
    assert measured.exchange.offset_s == pytest.approx(5.0)
    assert measured.exchange.round_trip_s == pytest.approx(0.020)
    assert conn.receive_text(pong, 2.15, wall=1000.03) == []  # answered already
    forged = Pong(1_000_050_000, 1_005_060_000, 1_005_060_000).serialize()  # no such ping
    assert conn.receive_text(forged, 2.18, wall=1000.06) == []
    future = Pong(2_000_000_000, 1, 2).serialize()
    assert conn.receive_text(future, 2.2, wall=1000.1) == []
    stale = Pong(900_000_000, 1, 2).serialize()
    assert conn.receive_text(stale, 2.3, wall=1000.1) == []
    actions = conn.receive_text('{"type": "pang"}', 2.4, wall=1000.2)
    (close,) = (a for a in actions if isinstance(a, Close))
    assert close.code == 1002 and "expected a pong" in close.reason


def test_a_sender_that_does_not_answer_pings_is_never_pinged() -> None:
    conn = streaming()
    assert not any(
        isinstance(a, Send) and json.loads(a.text)["type"] == "ping"
        for now in (1.0, 2.0, 3.0)
        for a in conn.tick(now, 0, 0, wall=1000.0 + now)
    )
    actions = conn.receive_text(Pong(1, 2, 3).serialize(), 3.1, wall=1003.0)
    (close,) = (a for a in actions if isinstance(a, Close))
    assert close.code == 1002
