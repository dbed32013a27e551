from __future__ import annotations

import numpy as np
import pytest

from micwire.common.assembly import MAX_GAP_S, AssemblyStats, Depacketizer, RealTimeBound
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


def flat(segments: list[object]) -> np.ndarray:
    out = [np.zeros((s, 1), np.int16) if isinstance(s, int) else s for s in segments]
    return np.concatenate(out) if out else np.zeros((0, 1), np.int16)


def test_a_packet_sent_twice_is_recorded_once() -> None:
    d = depacketizer()
    out = [s for p in (pcm_packet(0, 0, value=1), pcm_packet(0, 0, value=1)) for s in d.push(p)]
    out += d.push(pcm_packet(1, 160, value=2))
    assert len(flat(out)) == 320
    assert (d.stats.duplicate_packets, d.stats.overlap_samples) == (1, 160)


def test_overlapping_timestamps_keep_the_timeline() -> None:
    """Timestamps 0, 80, 160 with 160-sample packets: 320 samples of timeline, not 480;
    what the timeline already had is dropped and counted."""
    d = depacketizer()
    out = [s for i in range(3) for s in d.push(pcm_packet(i, 80 * i, value=i + 1))]
    audio = flat(out)[:, 0]
    assert len(audio) == 320 and d.position == 320
    assert list(audio[[0, 159, 160, 239, 240]]) == [1, 1, 2, 2, 3]
    assert d.stats.overlap_samples == 160 and d.stats.samples == 320


def test_an_opus_packet_from_before_the_timeline_is_not_decoded() -> None:
    from micwire.common.codecs import make_encoder

    params = StreamParams("opus", 48000, 1, 20.0)
    encoder = make_encoder(params)
    params = StreamParams("opus", 48000, 1, 20.0, pre_skip=encoder.pre_skip)
    tone = np.rint(np.sin(np.arange(960 * 3) / 10) * 8000).astype(np.int16)[:, None]
    payloads = [encoder.encode(tone[k * 960 : (k + 1) * 960]) for k in range(3)]
    d = depacketizer(params)
    d.push(Packet(0, 0, 960 - encoder.pre_skip, payloads[0]))
    d.push(Packet(1, 960, 960, payloads[1]))
    assert d.push(Packet(1, 960, 960, payloads[1])) == []  # the same packet again
    assert d.stats.duplicate_packets == 1
    assert len(flat(d.push(Packet(2, 1920, 960, payloads[2])))) == 960


def test_a_connection_continues_the_timeline_where_it_stands() -> None:
    """start=1000: audio before it is dropped, a later first packet leaves exact silence."""
    resent = Depacketizer(PCM, make_decoder(PCM), start=1000)
    assert len(flat(resent.push(pcm_packet(0, 960)))) == 120  # 960..1120, 1000 on kept
    later = Depacketizer(PCM, make_decoder(PCM), start=1000)
    assert later.push(pcm_packet(0, 1600))[0] == 600
    unknown = Depacketizer(PCM, make_decoder(PCM), start=None)  # starts at its first packet
    assert len(flat(unknown.push(pcm_packet(0, 5000)))) == 160 and unknown.start == 5000


def test_a_packet_ahead_of_real_time_is_refused_before_it_costs_anything() -> None:
    bound = RealTimeBound(8000, position=0, time=100.0)  # a stream that just started
    assert bound.limit(100.0) == 16000  # the 2 s margin
    assert bound.limit(110.0) == pytest.approx(16000 + 80080, abs=1)  # 10 s on (+0.1 % drift)
    d = depacketizer()
    d.push(pcm_packet(0, 0), limit=bound.limit(100.0))
    with pytest.raises(
        FrameError, match=r"runs 3\.000 s ahead of the stream's real time \(at most 2 s is"
    ):
        d.push(pcm_packet(1, 16000 - 160 + 8000), bound.limit(100.0), bound.allowance)
    # just past the margin: the real figure, not "0.0 s ahead"
    with pytest.raises(FrameError, match=r"runs 2\.005 s ahead"):
        d.push(pcm_packet(1, 16000 - 160 + 40), bound.limit(100.0), bound.allowance)
    assert bound.limit(50.0) == 16000  # a clock that went back gives no credit


def test_a_resumed_opus_encoders_warm_up_is_not_counted_as_duplicates() -> None:
    """The receiver has the stream up to 1 s; the sender's fresh encoder starts half a
    second before that to settle (as micwire's does). That half second is decoded and
    dropped, counted as warm-up; a packet really sent twice is still a duplicate."""
    from micwire.common.codecs import make_encoder
    from micwire.common.framing import Block, Framer, Packetizer

    rate, start, cursor = 48000, 48000, 24000
    encoder = make_encoder(StreamParams("opus", rate, 1, 20.0))
    params = StreamParams("opus", rate, 1, 20.0, pre_skip=encoder.pre_skip)
    tone = np.rint(np.sin(np.arange(2 * rate) / 10) * 8000).astype(np.int16)[:, None]
    framer = Framer(960, 1, rate, fill_gaps=True, partial=False)
    packetizer = Packetizer(encoder, origin=cursor)
    chunks = framer.push(Block(cursor, tone[cursor:], 0.0))
    wire = [p for chunk in chunks for p in packetizer.packets(chunk)]
    wire += packetizer.finish(9.0)
    wire.insert(41, wire[40])  # a packet after the resume point again (a sender's bug, say)
    d = Depacketizer(params, make_decoder(params), start=start)
    out = [s for packet in wire for s in d.push(packet)]
    assert d.ended and d.position == 2 * rate and len(flat(out)) == 2 * rate - start
    assert (d.stats.lead_in_samples, d.stats.lead_in_packets) == (start - cursor, 25)
    assert (d.stats.duplicate_packets, d.stats.overlap_samples) == (1, 960)


def test_pcm_from_before_the_start_is_overlap_not_warm_up() -> None:
    """PCM needs no run-up: a resend from before where the connection was accepted is
    audio the timeline had (overlap), not a codec's warm-up."""
    d = Depacketizer(PCM, make_decoder(PCM), start=320)
    out = [s for i in range(4) for s in d.push(pcm_packet(i, 160 * i, value=i + 1))]
    assert len(flat(out)) == 320 and d.position == 640
    assert (d.stats.duplicate_packets, d.stats.overlap_samples) == (2, 320)
    assert (d.stats.lead_in_packets, d.stats.lead_in_samples) == (0, 0)


def test_a_streams_totals_are_the_sum_of_its_connections() -> None:
    """Every field counts, so every field adds up (a field added later is not forgotten)."""
    first = depacketizer()
    second = Depacketizer(PCM, make_decoder(PCM), start=640)  # its sender reconnected
    for d, timestamps in ((first, (0, 160, 160, 480)), (second, (640, 960))):
        for seq, ts in enumerate(timestamps):
            d.push(pcm_packet(seq, ts))
    total = first.stats + second.stats
    assert total == AssemblyStats(
        packets=6, samples=1120, gap_samples=320, gaps=2, duplicate_packets=1, overlap_samples=160
    )
    assert first.stats + AssemblyStats() == first.stats
