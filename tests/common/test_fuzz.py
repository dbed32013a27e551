"""Property-based fuzzing of every parser that sees network input: whatever the bytes,
the answer is a value or a ProtocolError/ParameterError (what the receiver turns into a
close code), never another exception."""

from __future__ import annotations

import contextlib
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from micwire.common.assembly import Depacketizer
from micwire.common.codecs import make_decoder
from micwire.common.errors import ParameterError, ProtocolError
from micwire.common.protocol import HEADER, Hello, Packet, StreamParams, parse_reply

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
hello_like = st.fixed_dictionaries(
    {"type": st.just("hello"), "protocol": st.just(1)},
    optional={
        k: json_values | st.integers(-(2**70), 2**70)
        for k in (
            "stream",
            "codec",
            "rate_hz",
            "channels",
            "frame_ms",
            "bitrate",
            "pre_skip",
            "start_time_us",
            "sent_time_us",
            "software",
        )
    },
)


@settings(max_examples=400)
@given(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=300),
        json_values.map(json.dumps),
        hello_like.map(json.dumps),
    )
)
def test_hello_and_reply_parsers_only_raise_protocol_errors(message: str | bytes) -> None:
    for parse in (Hello.parse, parse_reply):
        with contextlib.suppress(ProtocolError, ParameterError):
            parse(message)


@settings(max_examples=400)
@given(
    st.binary(max_size=200)
    | st.builds(
        lambda head, body: HEADER.pack(*head) + body,
        st.tuples(
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 2**16 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**64 - 1),
        ),
        st.binary(max_size=4000),
    )
)
def test_packet_parser_and_depacketizer_only_raise_protocol_errors(data: bytes) -> None:
    for codec in ("pcm", "opus"):
        params = StreamParams(codec, 48000, 2, 20.0, pre_skip=312 if codec == "opus" else 0)
        d = Depacketizer(params, make_decoder(params))
        try:
            segments = d.push(Packet.parse(data))
        except ProtocolError:
            continue
        for segment in segments:  # anything accepted has a sane shape
            assert isinstance(segment, int) or (segment.dtype == np.int16 and segment.shape[1] == 2)
