"""The micwire wire protocol, version 2 (specified in docs/PROTOCOL.md).

One WebSocket connection carries one audio stream:

1. the sender sends a text message holding a JSON :class:`Hello`;
2. the receiver answers with a text message holding a JSON :class:`Accept` or
   :class:`Refuse` (after a refusal it closes the connection);
3. the sender sends one binary message per codec frame: a fixed 24-byte header
   (:data:`HEADER`) followed by the codec payload (:class:`Packet`);
4. the receiver acknowledges what it has recorded with :class:`Ack` text messages, and
   confirms the end of the stream with :class:`Done` before it closes (version 2).

Everything here is pure: values in, values or :class:`~micwire.common.errors.ProtocolError`
out. Parsers never trust their input; ``check`` methods validate against the stream's
parameters.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from .errors import FrameError, HelloError, ParameterError

PROTOCOL_VERSION = 2
#: Hello versions a receiver serves. Version 1 senders get no acknowledgements and cannot
#: resume (they have no resume secret); everything else is the same.
SUPPORTED_VERSIONS = (1, 2)
#: The binary packet header's own version byte: unchanged since protocol version 1.
PACKET_VERSION = 1

#: Codecs this version of the protocol knows.
CODECS = ("pcm", "opus")
#: Frame durations the protocol allows, in milliseconds (Opus's own set, RFC 6716 §2.1.4).
FRAME_DURATIONS_MS = (2.5, 5.0, 10.0, 20.0, 40.0, 60.0)
#: Sample rates libopus can encode at (RFC 6716 §2).
OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
MIN_RATE_HZ = 8000
MAX_RATE_HZ = 192_000
MAX_CHANNELS_PCM = 8
MAX_CHANNELS_OPUS = 2  # a single Opus stream carries mono or stereo (RFC 6716 §3.1)
MIN_BITRATE = 6000  # libopus' range, OPUS_SET_BITRATE
MAX_BITRATE = 510_000
MAX_STREAM_NAME = 200
_STREAM_ID = re.compile(r"[A-Za-z0-9-]{0,64}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{0,128}")
#: Clock fields stop at the start of year 2200: a wall clock beyond that is broken.
MAX_TIME_US = 7_258_118_400_000_000
#: A refusal's ``retry_after_s`` beyond this is not believed (a sender would wait an hour).
MAX_RETRY_AFTER_S = 3600.0
#: Upper bound for a hello message, in bytes of UTF-8.
MAX_HELLO_BYTES = 4096
#: An Opus packet of one frame is at most 1275 bytes (RFC 6716 §3.2.1); code 3 packets that
#: carry several frames (60 ms at most here) stay well under this bound.
MAX_OPUS_PACKET = 4000

#: Binary frame header, network byte order: version (u8), flags (u8), samples (u16),
#: sequence number (u32), timestamp in samples (u64), capture time in µs since the Unix
#: epoch on the sender's clock (u64).
HEADER = struct.Struct("!BBHIQQ")

#: The sender will send nothing after this packet; the stream ended normally.
FLAG_LAST = 0x01
KNOWN_FLAGS = FLAG_LAST


def max_message_bytes() -> int:
    """The largest binary message any valid stream can produce (largest PCM frame)."""
    largest = StreamParams("pcm", MAX_RATE_HZ, MAX_CHANNELS_PCM, max(FRAME_DURATIONS_MS))
    return HEADER.size + largest.max_payload_bytes


@dataclass(frozen=True)
class StreamParams:
    """What the audio on one connection looks like."""

    codec: str = "pcm"
    rate_hz: int = 48000
    channels: int = 1
    frame_ms: float = 20.0
    #: Opus target bitrate in bit/s (informational for the receiver).
    bitrate: int = 32000
    #: Decoded samples (per channel) at the start of the stream that are codec delay, not
    #: audio, and that a recording drops (the Ogg Opus "pre-skip", RFC 7845 §4.2).
    pre_skip: int = 0

    @functools.cached_property
    def frame_samples(self) -> int:
        """Samples per channel in one full frame."""
        return round(self.rate_hz * self.frame_ms / 1000)

    def json_fields(self) -> dict[str, Any]:
        """The parameters as a hello's JSON fields name them (a sender's resume entry keeps
        them under the same names)."""
        return {
            "codec": self.codec,
            "rate_hz": self.rate_hz,
            "channels": self.channels,
            "frame_ms": self.frame_ms,
            "bitrate": self.bitrate,
            "pre_skip": self.pre_skip,
        }

    @property
    def max_payload_bytes(self) -> int:
        if self.codec == "pcm":
            return self.frame_samples * self.channels * 2
        return MAX_OPUS_PACKET

    def check(self) -> StreamParams:
        """Return self if every field is in range, else raise :class:`ParameterError`."""
        if self.codec not in CODECS:
            raise ParameterError(f"unknown codec {self.codec!r}; use one of {', '.join(CODECS)}")
        if not MIN_RATE_HZ <= self.rate_hz <= MAX_RATE_HZ:
            raise ParameterError(
                f"sample rate {self.rate_hz} Hz is out of range {MIN_RATE_HZ}..{MAX_RATE_HZ}"
            )
        max_channels = MAX_CHANNELS_OPUS if self.codec == "opus" else MAX_CHANNELS_PCM
        if not 1 <= self.channels <= max_channels:
            raise ParameterError(
                f"{self.channels} channels is out of range 1..{max_channels} for {self.codec}"
            )
        if self.frame_ms not in FRAME_DURATIONS_MS:
            allowed = ", ".join(f"{d:g}" for d in FRAME_DURATIONS_MS)
            # every digit given: "2.50000001 ms is not one of 2.5, …", not "2.5 ms is not"
            given = f"{self.frame_ms:.15g}"
            raise ParameterError(f"frame duration {given} ms is not one of {allowed}")
        exact = self.rate_hz * self.frame_ms / 1000
        if exact != self.frame_samples:
            raise ParameterError(
                f"{self.frame_ms:g} ms at {self.rate_hz} Hz is not a whole number of samples"
            )
        if self.codec == "opus":
            if self.rate_hz not in OPUS_RATES_HZ:
                rates = ", ".join(str(r) for r in OPUS_RATES_HZ)
                raise ParameterError(f"Opus cannot run at {self.rate_hz} Hz; use one of {rates}")
            if not MIN_BITRATE <= self.bitrate <= MAX_BITRATE:
                raise ParameterError(
                    f"Opus bitrate {self.bitrate} is out of range {MIN_BITRATE}..{MAX_BITRATE}"
                )
        if not 0 <= self.pre_skip <= self.rate_hz:
            raise ParameterError(f"pre-skip of {self.pre_skip} samples is out of range")
        return self


def _field(obj: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """Fetch ``obj[key]`` with an exact type check (``True`` is not an int here)."""
    if key not in obj:
        if default is None:
            raise HelloError(f"hello lacks the field {key!r}")
        return default
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind or (kind is float and not math.isfinite(cast(float, value))):
        raise HelloError(f"hello field {key!r} must be {kind.__name__}, got {value!r:.40}")
    if kind is str:
        try:
            cast(str, value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON allows it, text does not
            raise HelloError(f"hello field {key!r} is not valid Unicode text") from None
    return value


def _load_object(text: str | bytes, what: str) -> dict[str, Any]:
    if isinstance(text, bytes):
        raise HelloError(f"expected the {what} as a text message, got binary")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_HELLO_BYTES:
        raise HelloError(f"{what} is longer than {MAX_HELLO_BYTES} bytes")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise HelloError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise HelloError(f"{what} must be a JSON object")
    return obj


@dataclass(frozen=True)
class Hello:
    """First message of a connection, sender to receiver."""

    stream: str
    params: StreamParams
    #: Sender wall clock (µs since the Unix epoch) at which sample 0 was captured.
    start_time_us: int
    #: Sender wall clock when the hello was sent; lets the receiver estimate clock offset.
    sent_time_us: int
    software: str = ""
    version: int = PROTOCOL_VERSION
    #: Identifies one capture run across reconnects (lets a receiver resume the stream).
    stream_id: str = ""
    #: This connection continues a stream whose earlier connection was lost.
    resuming: bool = False
    #: The secret the receiver gave this stream in its accept; proves a resuming sender is
    #: the stream's own (version 2).
    resume_secret: str = ""
    #: With ``resuming``: a new process of the stream's sender (it restarted), which only
    #: ends the stream (its next packet is the last, at the resume point). What the earlier
    #: process had not delivered is lost; the recording says so.
    restarted: bool = False
    #: The sender answers the receiver's :class:`Ping` with a :class:`Pong` (the receiver
    #: then measures the sender's clock against its own). Optional: a receiver pings only
    #: senders that say so.
    clock: bool = False

    TYPE: ClassVar[str] = "hello"

    def serialize(self) -> str:
        # "restarted" and "clock" only when set: every other hello stays as it was
        extra: dict[str, bool] = {"restarted": True} if self.restarted else {}
        if self.clock:
            extra["clock"] = True
        return json.dumps(
            {
                "type": self.TYPE,
                "protocol": self.version,
                "stream": self.stream,
                **self.params.json_fields(),
                "start_time_us": self.start_time_us,
                "sent_time_us": self.sent_time_us,
                "software": self.software,
                "stream_id": self.stream_id,
                "resuming": self.resuming,
                "resume_secret": self.resume_secret,
                **extra,
            }
        )

    @property
    def claimed_age_us(self) -> int:
        """How long the sender says it has been capturing (on its own clock)."""
        return max(0, self.sent_time_us - self.start_time_us)

    @classmethod
    def parse(cls, text: str | bytes) -> Hello:
        """Parse and fully check a hello; raise HelloError or ParameterError."""
        obj = _load_object(text, "hello")
        if obj.get("type") != cls.TYPE:
            raise HelloError(f"first message must be a hello, got type {obj.get('type')!r:.40}")
        version = _field(obj, "protocol", int)
        if version not in SUPPORTED_VERSIONS:
            raise HelloError(
                f"unsupported protocol version {version} (this side speaks "
                f"{' and '.join(str(v) for v in SUPPORTED_VERSIONS)})"
            )
        stream = _field(obj, "stream", str)
        if not stream.strip() or len(stream) > MAX_STREAM_NAME:
            raise HelloError(f"stream name must be 1..{MAX_STREAM_NAME} characters")
        params = StreamParams(
            codec=_field(obj, "codec", str),
            rate_hz=_field(obj, "rate_hz", int),
            channels=_field(obj, "channels", int),
            frame_ms=_field(obj, "frame_ms", float),
            bitrate=_field(obj, "bitrate", int, StreamParams.bitrate),
            pre_skip=_field(obj, "pre_skip", int, 0),
        ).check()
        start = _field(obj, "start_time_us", int)
        sent = _field(obj, "sent_time_us", int)
        if not (0 <= start <= MAX_TIME_US and 0 <= sent <= MAX_TIME_US):
            raise HelloError("clock fields must be µs since the Unix epoch, before year 2200")
        software = "".join(ch for ch in _field(obj, "software", str, "")[:100] if ch.isprintable())
        stream_id = _field(obj, "stream_id", str, "")
        if not _STREAM_ID.fullmatch(stream_id):
            raise HelloError("stream_id must be 0..64 letters, digits or dashes")
        resuming = obj.get("resuming", False) is True
        secret = _field(obj, "resume_secret", str, "")
        if not _SECRET.fullmatch(secret):
            raise HelloError("resume_secret must be 0..128 letters, digits, '-' or '_'")
        restarted = resuming and obj.get("restarted", False) is True
        clock = obj.get("clock", False) is True
        return cls(
            stream,
            params,
            start,
            sent,
            software,
            version,
            stream_id,
            resuming,
            secret,
            restarted,
            clock,
        )


@dataclass(frozen=True)
class Accept:
    """Receiver's answer to a good hello."""

    stream: str
    recording: str | None = None
    version: int = PROTOCOL_VERSION
    #: Where on the stream's timeline the sender starts this connection, in samples: 0 for a
    #: new stream; on a resumed one, how far the receiver's recording reaches (the sender
    #: sends everything from there, with a fresh encoder). None: the receiver knows nothing
    #: of this stream; the sender starts from the oldest audio not yet acknowledged.
    resume_timestamp: int | None = None
    #: A random secret for this stream: a sender presents it to resume the stream later, so
    #: nobody else can take the stream over or add to its recording (version 2).
    resume_secret: str | None = None

    TYPE: ClassVar[str] = "accept"

    def serialize(self) -> str:
        return json.dumps(
            {
                "type": self.TYPE,
                "protocol": self.version,
                "stream": self.stream,
                "recording": self.recording,
                "resume_timestamp": self.resume_timestamp,
                "resume_secret": self.resume_secret,
            }
        )


@dataclass(frozen=True)
class Refuse:
    """Receiver's answer to a hello it will not serve; the connection closes after it."""

    reason: str
    #: The refusal is for now, not for good (receiver full, the name is in use): the sender
    #: may try again later. The close code is then 1013, else 1008.
    retry: bool = False
    #: With ``retry``: when it is worth trying again, in seconds, if the receiver knows (a
    #: name held for a sender that may come back frees then). Optional on the wire.
    retry_after_s: float | None = None

    TYPE: ClassVar[str] = "refuse"

    def serialize(self) -> str:
        message: dict[str, Any] = {"type": self.TYPE, "reason": self.reason, "retry": self.retry}
        if self.retry_after_s is not None:
            message["retry_after_s"] = round(self.retry_after_s, 1)
        return json.dumps(message)


@dataclass(frozen=True)
class Ack:
    """Receiver to sender, about once a second: the stream's recording holds everything
    before timeline position ``timestamp`` (version 2)."""

    timestamp: int

    TYPE: ClassVar[str] = "ack"

    def serialize(self) -> str:
        return json.dumps({"type": self.TYPE, "timestamp": self.timestamp})


@dataclass(frozen=True)
class Done:
    """Receiver to sender, after the packet with ``LAST``: the recording is finalised and
    holds the stream up to ``timestamp``, of which ``gap_samples`` are silence standing in
    for audio that never arrived (version 2). The receiver then closes with 1000."""

    timestamp: int
    gap_samples: int = 0
    #: The recording's first file name, if the receiver records (files are created on the
    #: first audio, so the accept cannot always name it).
    recording: str | None = None

    TYPE: ClassVar[str] = "done"

    def serialize(self) -> str:
        return json.dumps(
            {
                "type": self.TYPE,
                "timestamp": self.timestamp,
                "gap_samples": self.gap_samples,
                "recording": self.recording,
            }
        )


@dataclass(frozen=True)
class Ping:
    """Receiver to sender, every few seconds to a sender whose hello said ``"clock": true``:
    ``t1_us``, the receiver's wall clock when it sent this (µs since the Unix epoch)."""

    t1_us: int

    TYPE: ClassVar[str] = "ping"

    def serialize(self) -> str:
        return json.dumps({"type": self.TYPE, "t1_us": self.t1_us})


@dataclass(frozen=True)
class Pong:
    """Sender to receiver, the answer to a :class:`Ping`, as soon as it can: the ping's
    ``t1_us``, and by the sender's wall clock when the ping came (``t2_us``) and when this
    left (``t3_us``)."""

    t1_us: int
    t2_us: int
    t3_us: int

    TYPE: ClassVar[str] = "pong"

    def serialize(self) -> str:
        return json.dumps(
            {"type": self.TYPE, "t1_us": self.t1_us, "t2_us": self.t2_us, "t3_us": self.t3_us}
        )

    @classmethod
    def parse(cls, text: str | bytes) -> Pong:
        """A pong, fully checked (HelloError: not one)."""
        obj = _load_object(text, "pong")
        if obj.get("type") != cls.TYPE:
            raise HelloError(f"expected a pong, got type {obj.get('type')!r:.40}")
        times = [_position(obj, key) for key in ("t1_us", "t2_us", "t3_us")]
        if any(t is None or t > MAX_TIME_US for t in times):
            raise HelloError("a pong's times must be µs since the Unix epoch, before year 2200")
        t1, t2, t3 = (int(t) for t in times if t is not None)
        return cls(t1, t2, t3)


def _position(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if type(value) is int and 0 <= value < 2**63 else None


def parse_reply(text: str | bytes) -> Accept | Refuse | Ack | Done | Ping:
    """Parse a message from the receiver: the answer to a hello, or an ack/done/ping
    later."""
    obj = _load_object(text, "reply")
    kind = obj.get("type")
    if kind == Ping.TYPE:
        t1 = _position(obj, "t1_us")
        if t1 is None:
            raise HelloError("ping lacks t1_us")
        return Ping(t1)
    if kind == Refuse.TYPE:
        retry = obj.get("retry") is True
        after = obj.get("retry_after_s")
        if not (
            retry
            and isinstance(after, (int, float))
            and not isinstance(after, bool)
            and 0 <= after <= MAX_RETRY_AFTER_S
        ):
            after = None  # absent, or nonsense: the sender's own back-off
        return Refuse(
            str(obj.get("reason", "no reason given"))[:500],
            retry,
            float(after) if after is not None else None,
        )
    if kind == Accept.TYPE:
        recording = obj.get("recording")
        secret = obj.get("resume_secret")
        return Accept(
            stream=_field(obj, "stream", str),
            recording=recording if isinstance(recording, str) else None,
            version=_field(obj, "protocol", int),
            resume_timestamp=_position(obj, "resume_timestamp"),
            resume_secret=secret if isinstance(secret, str) and _SECRET.fullmatch(secret) else None,
        )
    if kind in (Ack.TYPE, Done.TYPE):
        timestamp = _position(obj, "timestamp")
        if timestamp is None:
            raise HelloError(f"{kind} lacks a timestamp")
        if kind == Ack.TYPE:
            return Ack(timestamp)
        recording = obj.get("recording")
        return Done(
            timestamp,
            _position(obj, "gap_samples") or 0,
            recording if isinstance(recording, str) else None,
        )
    raise HelloError(f"unexpected message type {kind!r:.40} from the receiver")


@dataclass(frozen=True)
class Packet:
    """One binary message: one codec frame and where it sits on the stream's timeline."""

    seq: int
    #: Position of the frame's first sample, in samples (per channel) since sample 0.
    timestamp: int
    #: Samples per channel this packet adds to the stream: the frame's length for PCM; for
    #: Opus, how many decoded samples to keep once pre-skip is dropped (docs/PROTOCOL.md).
    samples: int
    payload: bytes = field(repr=False)
    capture_time_us: int = 0
    flags: int = 0
    version: int = PACKET_VERSION

    @property
    def last(self) -> bool:
        return bool(self.flags & FLAG_LAST)

    def serialize(self) -> bytes:
        return (
            HEADER.pack(
                self.version,
                self.flags,
                self.samples,
                self.seq & 0xFFFFFFFF,
                self.timestamp,
                self.capture_time_us,
            )
            + self.payload
        )

    @classmethod
    def parse(cls, data: bytes | str) -> Packet:
        """Split a binary message into header fields and payload; check the header alone."""
        if isinstance(data, str):
            raise FrameError("expected a binary audio frame, got a text message")
        if len(data) < HEADER.size:
            raise FrameError(
                f"frame of {len(data)} bytes is shorter than the {HEADER.size}-byte header"
            )
        version, flags, samples, seq, timestamp, capture_time_us = HEADER.unpack_from(data)
        if version != PACKET_VERSION:
            raise FrameError(f"frame has protocol version {version}, expected {PACKET_VERSION}")
        if flags & ~KNOWN_FLAGS:
            raise FrameError(f"frame has unknown flags 0x{flags:02x}")
        return cls(seq, timestamp, samples, bytes(data[HEADER.size :]), capture_time_us, flags)

    def check(self, params: StreamParams) -> Packet:
        """Return self if the frame fits the stream's parameters, else raise FrameError."""
        if self.samples > params.frame_samples:
            raise FrameError(
                f"frame claims {self.samples} samples; a frame holds 0..{params.frame_samples}"
            )
        size = len(self.payload)
        if params.codec == "pcm":
            expected = self.samples * params.channels * 2
            if size != expected:
                raise FrameError(
                    f"PCM frame of {self.samples} samples x {params.channels} ch must carry "
                    f"{expected} bytes, got {size}"
                )
        elif not 1 <= size <= MAX_OPUS_PACKET:
            raise FrameError(f"Opus packet of {size} bytes is out of range 1..{MAX_OPUS_PACKET}")
        return self


# WebSocket close codes a receiver uses (RFC 6455 §7.4.1); the reason text says more.
CLOSE_NORMAL = 1000  # stream ended
CLOSE_GOING_AWAY = 1001  # receiver shutting down
CLOSE_PROTOCOL_ERROR = 1002  # malformed or out-of-order binary frame
CLOSE_REFUSED = 1008  # hello refused: bad or unsupported hello, no hello in time
CLOSE_TOO_BIG = 1009  # message larger than any valid frame
CLOSE_INTERNAL_ERROR = 1011  # the receiver failed (e.g. disk full)
CLOSE_TRY_AGAIN = 1013  # not now: receiver full, stream name in use, no audio for too long
#: RFC 6455 §5.5: a close frame's payload is at most 125 bytes, 2 of them the code.
MAX_CLOSE_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """``text`` cut to fit a close frame, on a UTF-8 character boundary."""
    data = text.encode("utf-8")[:MAX_CLOSE_REASON_BYTES]
    return data.decode("utf-8", "ignore")
