from __future__ import annotations

import numpy as np
import pytest

from micwire.common.assembly import MAX_GAP_S, Depacketizer
from micwire.common.codecs import make_decoder
from micwire.common.errors import FrameError
from micwire.common.protocol import FLAG_LAST, Packet, StreamParams

PCM = StreamParams("pcm", 8000, 1, 20.0)  # 160-sample frames


def pcm_packet(seq: int, ts: int, n: int = 160, flags: int = 0, value: int = 1) -> Packet:
    return Packet(seq, ts, n, np.full(n, value, "<i2").tobytes(), flags=flags)


def depacketizer(params: StreamParams = PCM) -> Depacketizer:
    return Depacketizer(params, make_decoder(params))


def test_contiguous_packets_make_a_contiguous_timeline() -> None:
    d = depacketizer()
    segments = [s for i in range(3) for s in d.push(pcm_packet(i, 160 * i, value=i))]
    assert [int(s[0, 0]) for s in segments] == [0, 1, 2]
    assert d.stats.samples == 480 and d.stats.gaps == 0


def test_a_gap_becomes_exactly_that_much_silence() -> None:
    d = depacketizer()
    d.push(pcm_packet(0, 0))
    segments = d.push(pcm_packet(5, 160 * 5))
    assert segments[0] == 640 and len(segments[1]) == 160
    assert (d.stats.gaps, d.stats.gap_samples, d.stats.samples) == (1, 640, 960)


def test_a_stream_whose_first_packets_were_dropped_starts_with_silence() -> None:
    assert depacketizer().push(pcm_packet(3, 480))[0] == 480


def test_going_backwards_is_an_error() -> None:
    d = depacketizer()
    d.push(pcm_packet(0, 1600))
    with pytest.raises(FrameError, match="timestamp went backwards"):
        d.push(pcm_packet(1, 0))


def test_a_hostile_jump_is_refused_before_it_costs_memory() -> None:
    d = depacketizer()
    with pytest.raises(FrameError, match=r"jumps .* s ahead"):
        d.push(pcm_packet(0, (MAX_GAP_S + 1) * 8000))
    with pytest.raises(FrameError, match="jumps"):
        depacketizer().push(pcm_packet(0, 2**63))


def test_nothing_after_the_end() -> None:
    d = depacketizer()
    d.push(pcm_packet(0, 0, flags=FLAG_LAST))
    assert d.ended
    with pytest.raises(FrameError, match="after the end-of-stream"):
        d.push(pcm_packet(1, 160))


def test_packet_must_match_the_stream() -> None:
    with pytest.raises(FrameError, match="must carry"):
        depacketizer().push(Packet(0, 0, 160, b"\0" * 10))


def test_opus_claim_beyond_the_decoded_frame_is_an_error() -> None:
    from micwire.common.codecs import make_encoder

    params = StreamParams("opus", 48000, 1, 20.0, pre_skip=312)
    payload = make_encoder(params).encode(np.zeros((960, 1), np.int16))
    with pytest.raises(FrameError, match="claims 960 samples but decodes to 648"):
        depacketizer(params).push(Packet(0, 0, 960, payload))


def test_live_concealment_stands_in_for_lost_opus_frames() -> None:
    from micwire.common.codecs import make_encoder
    from micwire.common.framing import Block, Framer, Packetizer

    params = StreamParams("opus", 48000, 1, 20.0)
    encoder = make_encoder(params, "voip", fec=True, expected_loss_pct=20)
    params = StreamParams("opus", 48000, 1, 20.0, pre_skip=encoder.pre_skip)
    t = np.arange(48000) / 48000
    tone = np.rint(np.sin(2 * np.pi * 300 * t) * 12000).astype(np.int16)[:, None]
    framer, packetizer = Framer(960, 1, 48000), Packetizer(encoder)
    packets = [p for c in framer.push(Block(0, tone, 0.0)) for p in packetizer.packets(c)]
    kept = packets[:20] + packets[23:]  # three frames lost
    recording = Depacketizer(params, make_decoder(params))
    live = Depacketizer(params, make_decoder(params), conceal_frames=5)
    rec = [s for p in kept for s in recording.push(p)]
    out = [s for p in kept for s in live.push(p)]
    assert [s for s in rec if isinstance(s, int)] == [2880]  # the recording: exact silence
    stand_ins = [s for s in out if not isinstance(s, int)]
    assert sum(len(s) for s in stand_ins) == sum(
        s if isinstance(s, int) else len(s) for s in rec
    )  # same timeline length
    lost = np.concatenate(stand_ins)[20 * 960 - encoder.pre_skip :][:2880, 0]
    assert np.sqrt(np.mean(lost.astype(float) ** 2)) > 2000  # concealed, not silent


def test_pcm_has_no_concealment_and_keeps_silence() -> None:
    d = Depacketizer(PCM, make_decoder(PCM), conceal_frames=5)
    d.push(pcm_packet(0, 0))
    assert d.push(pcm_packet(3, 480))[0] == 320
