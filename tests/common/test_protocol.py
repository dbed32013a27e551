from __future__ import annotations

import json

import pytest

from micwire.common.errors import FrameError, HelloError, ParameterError, ProtocolError
from micwire.common.protocol import (
    FLAG_LAST,
    HEADER,
    MAX_CLOSE_REASON_BYTES,
    MAX_HELLO_BYTES,
    Accept,
    Ack,
    Done,
    Hello,
    Packet,
    Ping,
    Pong,
    Refuse,
    StreamParams,
    close_reason,
    max_message_bytes,
    parse_reply,
)


def hello_dict(**changes: object) -> dict[str, object]:
    base = json.loads(
        Hello(
            "mic", StreamParams(), 1_700_000_000_000_000, 1_700_000_000_000_001, "test"
        ).serialize()
    )
    base.update(changes)
    return base


def test_hello_round_trip_keeps_every_field() -> None:
    params = StreamParams("opus", 24000, 2, 2.5, 64000, 156)
    hello = Hello("kitchen mic", params, 123, 456, "x/1")
    assert Hello.parse(hello.serialize()) == hello


def test_hello_ignores_unknown_fields_for_forward_compatibility() -> None:
    parsed = Hello.parse(json.dumps(hello_dict(future_feature={"a": 1})))
    assert parsed.stream == "mic"


def test_hello_optional_fields_take_defaults() -> None:
    d = hello_dict()
    for key in ("bitrate", "pre_skip", "software"):
        del d[key]
    parsed = Hello.parse(json.dumps(d))
    assert (parsed.params.bitrate, parsed.params.pre_skip, parsed.software) == (32000, 0, "")


def test_integer_frame_ms_is_accepted() -> None:
    assert Hello.parse(json.dumps(hello_dict(frame_ms=20))).params.frame_ms == 20.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"protocol": 3}, "unsupported protocol version 3 \\(this side speaks 1 and 2\\)"),
        ({"type": "hi"}, "first message must be a hello"),
        ({"rate_hz": 10_000_000}, "sample rate 10000000 Hz is out of range"),
        ({"rate_hz": 100}, "out of range"),
        ({"channels": 1000}, "1000 channels is out of range"),
        ({"channels": 0}, "0 channels"),
        ({"codec": "mp3"}, "unknown codec 'mp3'"),
        ({"frame_ms": 7}, "frame duration 7 ms is not one of"),
        ({"frame_ms": 2.50000001}, "frame duration 2.50000001 ms is not one of"),
        ({"codec": "opus", "rate_hz": 44100}, "Opus cannot run at 44100 Hz"),
        ({"codec": "opus", "channels": 3}, "3 channels is out of range 1..2 for opus"),
        ({"codec": "opus", "bitrate": 1}, "Opus bitrate 1 is out of range"),
        ({"rate_hz": 44100, "frame_ms": 2.5}, "not a whole number of samples"),
        ({"rate_hz": True}, "must be int"),
        ({"rate_hz": "48000"}, "must be int"),
        ({"frame_ms": float("nan")}, "must be float"),
        ({"stream": ""}, "stream name must be"),
        ({"stream": "x" * 201}, "stream name must be"),
        ({"pre_skip": -1}, "pre-skip"),
        ({"start_time_us": -5}, "clock fields"),
        ({"start_time_us": 7_258_118_400_000_001}, "before year 2200"),
        ({"stream": "\ud800evil"}, "not valid Unicode text"),
        ({"resume_secret": "a/b"}, "resume_secret must be"),
        ({"resume_secret": 5}, "must be str"),
    ],
)
def test_bad_hello_is_refused_with_the_reason(changes: dict[str, object], message: str) -> None:
    with pytest.raises((HelloError, ParameterError), match=message):
        Hello.parse(json.dumps(hello_dict(**changes)))


def test_hello_missing_field_names_it() -> None:
    d = hello_dict()
    del d["rate_hz"]
    with pytest.raises(HelloError, match="lacks the field 'rate_hz'"):
        Hello.parse(json.dumps(d))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (b"binary", "got binary"),
        ("{" + " " * MAX_HELLO_BYTES + "}", "longer than"),
        ("[" * 100_000 + "]" * 100_000, "longer than"),
    ],
)
def test_garbage_hello(text: str | bytes, message: str) -> None:
    with pytest.raises(HelloError, match=message):
        Hello.parse(text)


def test_errors_are_both_micwire_and_builtin() -> None:
    with pytest.raises(ValueError):
        Hello.parse("nope")
    assert issubclass(FrameError, ProtocolError)


def test_version_1_hellos_are_still_served() -> None:
    hello = Hello.parse(json.dumps(hello_dict(protocol=1)))
    assert hello.version == 1 and hello.resume_secret == ""


def test_replies_round_trip() -> None:
    accept = Accept("mic", "mic-x.wav", resume_timestamp=480, resume_secret="s3-_x")
    assert parse_reply(accept.serialize()) == accept
    assert parse_reply(Refuse("too many", retry=True).serialize()) == Refuse("too many", True)
    assert parse_reply('{"type": "refuse"}') == Refuse("no reason given")
    assert parse_reply(
        '{"type": "accept", "stream": "a", "protocol": 1, "recording": 5}'
    ) == Accept("a", version=1)
    assert parse_reply(Ack(96000).serialize()) == Ack(96000)
    assert parse_reply(Done(96000, 480, "a.wav").serialize()) == Done(96000, 480, "a.wav")
    # a malformed secret or position is ignored, never trusted
    odd = '{"type":"accept","stream":"a","protocol":2,"resume_secret":"a b","resume_timestamp":-1}'
    assert parse_reply(odd) == Accept("a")
    with pytest.raises(HelloError, match="ack lacks a timestamp"):
        parse_reply('{"type": "ack", "timestamp": "1"}')
    with pytest.raises(HelloError, match="unexpected message type 'what'"):
        parse_reply('{"type": "what"}')


def test_clock_pings_and_pongs_round_trip_and_bad_ones_are_named() -> None:
    """A sender that answers pings says so in its hello (only then: older hellos stay as
    they were); a ping carries the receiver's time, a pong the three times."""
    hello = Hello("mic", StreamParams(), 1, 2, clock=True)
    assert Hello.parse(hello.serialize()).clock
    assert "clock" not in json.loads(Hello("mic", StreamParams(), 1, 2).serialize())
    assert not Hello.parse(json.dumps(hello_dict(clock="yes"))).clock
    assert parse_reply(Ping(1_796_000_000_000_000).serialize()) == Ping(1_796_000_000_000_000)
    with pytest.raises(HelloError, match="ping lacks t1_us"):
        parse_reply('{"type": "ping", "t1_us": -5}')
    pong = Pong(1, 2, 3)
    assert Pong.parse(pong.serialize()) == pong
    with pytest.raises(HelloError, match="expected a pong"):
        Pong.parse(Ack(5).serialize())
    with pytest.raises(HelloError, match="µs since the Unix epoch"):
        Pong.parse('{"type": "pong", "t1_us": 1, "t2_us": 2}')
    with pytest.raises(HelloError, match="µs since the Unix epoch"):
        Pong.parse('{"type": "pong", "t1_us": 1, "t2_us": 2, "t3_us": 9000000000000000}')


def test_a_refusal_may_say_when_to_retry() -> None:
    held = Refuse("stream name 'a' is in use: held ...", True, 47.25)
    assert json.loads(held.serialize())["retry_after_s"] == 47.2  # rounded, 0.1 s is enough
    assert parse_reply(held.serialize()) == Refuse(held.reason, True, 47.2)
    # optional: without it a refusal is what it always was (older senders ignore it)
    assert "retry_after_s" not in json.loads(Refuse("full", True).serialize())
    for odd in ('"soon"', "true", "-1", "1e9", "NaN", "Infinity"):
        text = f'{{"type": "refuse", "reason": "r", "retry": true, "retry_after_s": {odd}}}'
        assert parse_reply(text) == Refuse("r", True), odd
    # for good is for good: no time to come back
    no_retry = '{"type": "refuse", "reason": "r", "retry": false, "retry_after_s": 5}'
    assert parse_reply(no_retry) == Refuse("r")


def test_a_restarted_sender_says_so_only_when_it_resumes() -> None:
    ending = Hello("mic", StreamParams(), 1, 2, stream_id="x", resuming=True, restarted=True)
    assert Hello.parse(ending.serialize()) == ending
    assert Hello.parse(json.dumps(hello_dict(restarted=True))).restarted is False
    assert Hello.parse(json.dumps(hello_dict(resuming=True, restarted="yes"))).restarted is False
    # every other hello is as it was: no new field on the wire
    assert "restarted" not in hello_dict()


def test_packet_round_trip() -> None:
    packet = Packet(
        seq=7,
        timestamp=2**40,
        samples=960,
        payload=b"\x01\x02" * 960,
        capture_time_us=123456789,
        flags=FLAG_LAST,
    )
    data = packet.serialize()
    assert len(data) == HEADER.size + 1920
    parsed = Packet.parse(data)
    assert parsed == packet
    assert parsed.last


def test_packet_seq_wraps_at_32_bits() -> None:
    assert Packet.parse(Packet(2**32 + 5, 0, 0, b"").serialize()).seq == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00", "shorter than the 24-byte header"),
        (HEADER.pack(2, 0, 1, 0, 0, 0), "protocol version 2, expected 1"),
        (HEADER.pack(1, 0x80, 1, 0, 0, 0), "unknown flags 0x80"),
        ("text", "got a text message"),
    ],
)
def test_malformed_packets(data: bytes | str, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        Packet.parse(data)


def test_packet_check_against_stream() -> None:
    pcm = StreamParams("pcm", 48000, 2, 20.0)
    Packet(0, 0, 960, b"\0" * 960 * 4).check(pcm)
    with pytest.raises(FrameError, match="must carry 3840 bytes, got 3"):
        Packet(0, 0, 960, b"abc").check(pcm)
    with pytest.raises(FrameError, match=r"a frame holds 0\.\.960"):
        Packet(0, 0, 961, b"\0" * 961 * 4).check(pcm)
    opus = StreamParams("opus", 48000, 1, 20.0)
    Packet(0, 0, 960, b"x" * 100).check(opus)
    with pytest.raises(FrameError, match="Opus packet of 0 bytes"):
        Packet(0, 0, 960, b"").check(opus)
    with pytest.raises(FrameError, match="Opus packet of 5000 bytes"):
        Packet(0, 0, 960, b"x" * 5000).check(opus)


def test_params_sizes() -> None:
    assert StreamParams("pcm", 48000, 1, 2.5).frame_samples == 120
    assert StreamParams("pcm", 48000, 2, 20.0).max_payload_bytes == 3840
    assert StreamParams("opus").max_payload_bytes == 4000
    biggest = StreamParams("pcm", 192000, 8, 60.0).check()
    assert max_message_bytes() == HEADER.size + biggest.max_payload_bytes


def test_close_reason_fits_a_close_frame_on_a_character_boundary() -> None:
    reason = close_reason("é" * 100)
    assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
    assert reason == "é" * 61
    assert close_reason("short") == "short"
