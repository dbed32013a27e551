"""The sender's feed when the spool dropped audio a connection had not sent yet (a link
slower than the stream): what reaches the receiver holds a gap of exactly what the sender
counted lost, for PCM and Opus. Real encoders and the receiver's own depacketizer; the
link is a stand-in that takes packets or is full."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from micwire.common.assembly import Depacketizer
from micwire.common.codecs import make_decoder, make_encoder
from micwire.common.framing import Block, Framer, Packetizer
from micwire.common.protocol import Packet, StreamParams
from micwire.common.spool import Losses, Spool
from micwire.sender.config import SenderReport
from micwire.sender.feed import Feed

RATE = 48000


class FullOrNot:
    """A link that takes every packet at once, or none while ``full``."""

    def __init__(self) -> None:
        self.full = False
        self.sent: list[bytes] = []

    def send_now(self, data: bytes) -> bool:
        if not self.full:
            self.sent.append(data)
        return not self.full


@pytest.mark.parametrize("codec", ["pcm", "opus"])
@pytest.mark.parametrize("block", [960, 256, 1000])
def test_what_the_spool_dropped_reaches_the_receiver_as_a_gap_of_what_was_counted(
    codec: str, block: int
) -> None:
    encoder = make_encoder(StreamParams(codec, RATE, 1, 20.0))
    params = dataclasses.replace(encoder.params, pre_skip=encoder.pre_skip)
    t = np.arange(3 * RATE) / RATE
    signal = np.rint(np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(-1, 1)
    spool, link, losses = Spool(RATE // 2, RATE), FullOrNot(), Losses()
    framer = Framer(960, 1, RATE, fill_gaps=codec == "opus", partial=codec == "pcm")
    feed = Feed(
        spool,
        link,  # type: ignore[arg-type]
        framer,
        Packetizer(encoder),
        0,
        SenderReport(rate_hz=RATE),
        asyncio.Event(),
        lambda: None,
        losses.add,
    )
    for position in range(0, len(signal), block):
        link.full = RATE <= position < 2 * RATE  # a second with the link full
        if position == 2 * RATE:  # room again: the connection sends what waited
            link.sent += feed.backlog
            feed.backlog.clear()
        spool.append(Block(position, signal[position : position + block], position / RATE))
        feed.pump()
    tail = framer.flush()
    packets = [*(feed.packetizer.packets(tail) if tail else []), *feed.packetizer.finish(9.0)]
    depacketizer = Depacketizer(params, make_decoder(params))
    wire = [Packet.parse(data) for data in link.sent] + packets
    segments = [s for packet in wire for s in depacketizer.push(packet)]
    assert depacketizer.ended and depacketizer.position == len(signal)
    assert 0.4 * RATE < losses.total < 0.6 * RATE  # a second late, half a second held
    assert depacketizer.stats.gap_samples == losses.total
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
