from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from micwire.common.assembly import Depacketizer
from micwire.common.codecs import Encoder, make_decoder, make_encoder
from micwire.common.framing import Block, Framer, HandOff, Packetizer, codec_origin
from micwire.common.protocol import Packet, StreamParams


def noise(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, (n, channels), dtype=np.int16)


def blocks_of(signal: np.ndarray, sizes: list[int], rate: int = 48000) -> list[Block]:
    out, pos = [], 0
    for size in sizes:
        if pos >= len(signal):
            break
        out.append(Block(pos, signal[pos : pos + size], 1000.0 + pos / rate))
        pos += size
    return out


def test_framer_cuts_any_block_sizes_into_exact_frames() -> None:
    signal = noise(10_000, 2)
    framer = Framer(480, 2, 48000)
    sizes = list(np.random.default_rng(3).integers(1, 2000, 100))
    chunks = [c for b in blocks_of(signal, sizes) for c in framer.push(b)]
    tail = framer.flush()
    assert all(len(c.samples) == 480 for c in chunks)
    assert tail is not None and len(tail.samples) == 10_000 % 480
    assert [c.timestamp for c in chunks] == list(range(0, 480 * len(chunks), 480))
    assert np.array_equal(np.concatenate([c.samples for c in [*chunks, tail]]), signal)
    assert chunks[3].capture_time == pytest.approx(1000.0 + 3 * 480 / 48000)
    assert framer.flush() is None


def test_framer_marks_gaps_by_timestamp() -> None:
    framer = Framer(100, 1, 1000)
    first = framer.push(Block(0, noise(150), 0.0))
    after_gap = framer.push(Block(400, noise(100, seed=1), 0.4))
    assert [c.timestamp for c in first] == [0]
    assert [(c.timestamp, len(c.samples)) for c in after_gap] == [(100, 50), (400, 100)]
    assert framer.gap_samples == 250


def test_framer_can_fill_gaps_with_silence() -> None:
    framer = Framer(100, 1, 1000, fill_gaps=True)
    framer.push(Block(0, noise(150), 0.0))
    chunks = framer.push(Block(400, noise(100, seed=1), 0.4))
    assert [c.timestamp for c in chunks] == [100, 200, 300, 400]
    assert not np.any(chunks[0].samples[50:]) and not np.any(chunks[1].samples)
    assert framer.gap_samples == 250


def test_a_restarted_framer_drops_its_partial_frame_and_starts_anywhere() -> None:
    framer = Framer(100, 1, 1000, fill_gaps=True)
    framer.push(Block(0, noise(150), 0.0))
    assert framer.restart() == 100  # 50 samples from 100 were held: dropped
    assert framer.restart() is None  # nothing held now
    signal = noise(250, seed=1)
    chunks = framer.push(Block(700, signal, 0.7))  # no silence for 150..700
    assert [c.timestamp for c in chunks] == [700, 800]
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), signal[:200])
    assert framer.gap_samples == 0


def test_partial_framer_holds_nothing_back_for_the_next_block() -> None:
    signal = noise(1000)
    framer = Framer(120, 1, 48000, partial=True)
    chunks = [framer.push(b) for b in blocks_of(signal, [256] * 4)]
    assert [[(c.timestamp, len(c.samples)) for c in block] for block in chunks] == [
        [(0, 120), (120, 120), (240, 16)],
        [(256, 120), (376, 120), (496, 16)],
        [(512, 120), (632, 120), (752, 16)],
        [(768, 120), (888, 112)],  # 1000 samples in all
    ]
    assert np.array_equal(np.concatenate([c.samples for b in chunks for c in b]), signal)
    assert framer.flush() is None
    with pytest.raises(ValueError, match="fill_gaps"):
        Framer(120, 1, 48000, fill_gaps=True, partial=True)


def handed_over(hand_off: HandOff, sizes: list[int]) -> list[int]:
    """The sizes of the hand-overs a run of capture blocks makes."""
    out = []
    for n in sizes:
        pending = hand_off.pending + n
        if hand_off.add(n):
            out.append(pending)
    return out


@pytest.mark.parametrize("frame", [1, 240, 960, 1024, 2000])
def test_hand_off_gives_opus_each_frame_with_the_block_that_completes_it(frame: int) -> None:
    sizes = [int(n) for n in np.random.default_rng(frame).integers(1, 1500, 400)]
    ends = np.cumsum(sizes)
    handed = np.cumsum(handed_over(HandOff(frame, whole_frames=True), sizes))
    # handed over exactly at the first block end at or after each frame's last sample
    boundaries = np.arange(frame, ends[-1] + 1, frame)
    expected = np.unique(ends[np.searchsorted(ends, boundaries)])
    assert handed.tolist() == expected.tolist()


def test_hand_off_gathers_pcm_into_packets_of_up_to_a_frame() -> None:
    # JACK at 256 frames, 20 ms frames: three periods a wake-up (16 ms), never over a frame
    assert handed_over(HandOff(960, whole_frames=False), [256] * 12) == [768] * 4
    # a frame no longer than a period: every period at once (the lowest latency)
    assert handed_over(HandOff(240, whole_frames=False), [256] * 5) == [256] * 5
    assert handed_over(HandOff(2048, whole_frames=False), [1024] * 6) == [2048] * 3
    # irregular blocks: nothing is held back once the next block could overflow the frame
    assert handed_over(HandOff(960, whole_frames=False), [100, 900, 50, 400, 500]) == [
        1000,
        950,
    ]
    with pytest.raises(ValueError, match="at least one sample"):
        HandOff(0, whole_frames=True)


def test_a_resumed_encoder_starts_on_the_capture_s_frame_boundaries() -> None:
    frame, prime = 960, 24000
    # a resume mid-stream: half a second earlier, down to a frame boundary
    assert codec_origin(100_000 - 312, 0, frame, prime) == 74_880
    assert codec_origin(100_000 - 312, 0, frame, prime) % frame == 0
    # the first connection, from the start
    assert codec_origin(0, 0, frame, prime) == 0
    # the spool no longer holds the prime: from the first boundary it holds
    assert codec_origin(50_000, 40_100, frame, prime) == 40_320
    # nothing aligned before where it must start: from the oldest sample held
    assert codec_origin(40_200, 40_100, frame, prime) == 40_100
    # never later than the start, never before the oldest sample
    rng = np.random.default_rng(5)
    for _ in range(2000):
        oldest = int(rng.integers(0, 10**6))
        start = oldest + int(rng.integers(0, 10**5))
        origin = codec_origin(start, oldest, frame, prime)
        assert oldest <= origin <= start
        assert origin % frame == 0 or origin == oldest


def test_framer_refuses_overlaps_and_bad_shapes() -> None:
    framer = Framer(100, 1, 1000)
    framer.push(Block(0, noise(50), 0.0))
    with pytest.raises(ValueError, match="overlaps"):
        framer.push(Block(10, noise(50), 0.0))
    with pytest.raises(ValueError, match="shape"):
        framer.push(Block(50, noise(50, 2), 0.0))
    with pytest.raises(ValueError):
        Framer(0, 1, 1000)


def send_and_receive(
    params: StreamParams, signal: np.ndarray, sizes: list[int]
) -> tuple[list[Packet], np.ndarray]:
    encoder = make_encoder(params)
    params = dataclasses.replace(params, pre_skip=encoder.pre_skip)
    framer = Framer(
        params.frame_samples, params.channels, params.rate_hz, fill_gaps=params.codec == "opus"
    )
    packetizer = Packetizer(encoder)
    packets = []
    for block in blocks_of(signal, sizes):
        for chunk in framer.push(block):
            packets += packetizer.packets(chunk)
    tail = framer.flush()
    if tail is not None:
        packets += packetizer.packets(tail)
    packets += packetizer.finish(2000.0)
    wire = [Packet.parse(p.serialize()) for p in packets]
    depacketizer = Depacketizer(params, make_decoder(params))
    segments = [s for p in wire for s in depacketizer.push(p)]
    assert depacketizer.ended
    out = [np.zeros((s, params.channels), np.int16) if isinstance(s, int) else s for s in segments]
    return packets, np.concatenate(out) if out else np.zeros((0, params.channels), np.int16)


@pytest.mark.parametrize("n", [0, 1, 959, 960, 961, 48_000 + 17])
def test_pcm_stream_arrives_sample_exact(n: int) -> None:
    signal = noise(n, 2)
    packets, out = send_and_receive(StreamParams("pcm", 48000, 2, 20.0), signal, [256] * 400)
    assert np.array_equal(out, signal)
    assert packets[-1].last and sum(p.last for p in packets) == 1
    assert [p.seq for p in packets] == list(range(len(packets)))


@pytest.mark.parametrize("frame_ms", [2.5, 10.0, 20.0, 60.0])
@pytest.mark.parametrize("n", [1, 4800, 4801, 48_000 + 17])
def test_opus_stream_has_exactly_the_captured_length(frame_ms: float, n: int) -> None:
    t = np.arange(n) / 48000  # a chirp: no period for a misalignment to hide in
    signal = np.rint(np.sin(2 * np.pi * (200 + 1000 * t) * t) * 8000).astype(np.int16)[:, None]
    packets, out = send_and_receive(StreamParams("opus", 48000, 1, frame_ms), signal, [256] * 400)
    assert out.shape == signal.shape
    assert packets[-1].last
    if n > 9600:  # aligned without any search: the codec delay was removed
        a, b = out[:, 0].astype(float), signal[:, 0].astype(float)
        lags = range(-200, 201)
        scores = [float(np.dot(a[2400 + lag : -2400 + lag], b[2400:-2400])) for lag in lags]
        assert abs(lags[int(np.argmax(scores))]) <= 2  # codec phase, not a frame or pre-skip off
        assert np.corrcoef(a[2400:], b[2400:])[0, 1] > 0.85  # 32 kbit/s is perceptual, not exact


def test_packetizer_refuses_use_after_finish_and_going_back() -> None:
    packetizer = Packetizer(make_encoder(StreamParams("pcm", 8000, 1, 2.5)))
    from micwire.common.framing import FrameChunk

    packetizer.packets(FrameChunk(20, noise(20), 0.0))
    with pytest.raises(ValueError, match="goes back"):
        packetizer.packets(FrameChunk(0, noise(20), 0.0))
    packetizer.finish(0.0)
    with pytest.raises(ValueError, match="finished"):
        packetizer.packets(FrameChunk(40, noise(20), 0.0))


@pytest.mark.parametrize("cut", [4800, 4801, 20000])
def test_a_resumed_part_continues_exactly_where_the_first_stopped(cut: int) -> None:
    """A receiver restarted after writing ``cut`` samples: the sender resends the packets
    that reach past it, the new part drops what they hold before it."""
    signal = np.random.default_rng(4).integers(-9000, 9000, (48000, 1), dtype=np.int16)
    params = StreamParams("pcm", 48000, 1, 20.0)
    packets, whole = send_and_receive(params, signal, [256] * 400)
    resent = [p for p in packets if p.timestamp + 960 > cut]  # as the sender's backlog
    part2 = Depacketizer(params, make_decoder(params), start=cut)
    segments = [s for p in resent for s in part2.push(p)]
    joined = np.concatenate([whole[:cut], *[s for s in segments if not isinstance(s, int)]])
    assert np.array_equal(joined, signal)


def test_a_resumed_part_records_silence_for_what_the_sender_no_longer_has() -> None:
    params = StreamParams("pcm", 8000, 1, 20.0)
    part = Depacketizer(params, make_decoder(params), start=1000)
    segments = part.push(Packet(10, 1600, 160, b"\0\1" * 160))
    assert segments[0] == 600 and len(segments[1]) == 160


@pytest.mark.parametrize("frame_ms", [10.0, 20.0])
@pytest.mark.parametrize("cut", [48000, 48000 + 123])
def test_opus_resumes_gap_free_with_a_fresh_encoder(frame_ms: float, cut: int) -> None:
    """The receiver lost the stream's codec state (restarted, or another part): the sender
    encodes from where the recording ends with a fresh encoder; the new part starts there
    with a fresh decoder. The parts together are exactly as long as the capture, aligned,
    with no burst at the seam."""
    t = np.arange(96000) / 48000
    signal = np.rint(np.sin(2 * np.pi * (200 + 400 * t) * t) * 8000).astype(np.int16)[:, None]
    params = StreamParams("opus", 48000, 1, frame_ms)
    first_encoder = make_encoder(params)
    params = StreamParams("opus", 48000, 1, frame_ms, pre_skip=first_encoder.pre_skip)

    def part(encoder: Encoder, origin: int, end: int) -> np.ndarray:
        framer = Framer(params.frame_samples, 1, 48000, fill_gaps=True)
        packetizer = Packetizer(encoder, origin=origin)
        packets = []
        for block in blocks_of(signal[:end], [256] * 400):
            if block.end <= origin:
                continue
            if block.position < origin:
                block = Block(origin, block.samples[origin - block.position :], 0.0)
            for chunk in framer.push(block):
                packets += packetizer.packets(chunk)
        if (tail := framer.flush()) is not None:
            packets += packetizer.packets(tail)
        packets += packetizer.finish(0.0)
        receiver = Depacketizer(params, make_decoder(params), start=origin)
        out = [s for p in packets for s in receiver.push(Packet.parse(p.serialize()))]
        assert all(not isinstance(s, int) for s in out)
        return np.concatenate(out)

    first = part(first_encoder, 0, cut)
    second = part(make_encoder(params), cut, len(signal))
    assert (len(first), len(second)) == (cut, len(signal) - cut)
    joined = np.concatenate([first, second])[:, 0].astype(float)
    source = signal[:, 0].astype(float)
    assert np.corrcoef(joined[2400:-2400], source[2400:-2400])[0, 1] > 0.85
    seam = joined[cut - 960 : cut + 960]
    assert np.max(np.abs(seam)) < 1.5 * 8000  # no burst where the second part begins
    error = seam - source[cut - 960 : cut + 960]
    assert np.sqrt(np.mean(error**2)) < 0.5 * np.sqrt(np.mean(source[cut - 960 : cut + 960] ** 2))
