from __future__ import annotations

import numpy as np
import pytest

from micwire.common.jitter import JitterBuffer

RATE = 1000  # 1 sample = 1 ms keeps the arithmetic readable


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int16)[:, None]


def feed(jb: JitterBuffer, start: int, n: int, frame: int = 10, delay_s: float = 0.0) -> None:
    """Push ``ramp(start + 1, n)`` as frames arriving on time (+ ``delay_s``)."""
    for ts in range(start, start + n, frame):
        jb.push(ts, ramp(ts + 1, min(frame, start + n - ts)), ts / RATE + delay_s)


def buffer(floor: int = 0, **kw: int) -> JitterBuffer:
    kw.setdefault("fade_samples", 0)
    return JitterBuffer(1, RATE, floor, max_samples=kw.pop("max_samples", 5000), **kw)


def test_waits_for_the_target_then_plays_in_order() -> None:
    jb = buffer(floor=300)
    jb.push(0, ramp(0, 200), 0.0)
    assert not np.any(jb.pull(100)) and not jb.playing  # pre-buffering is not an underrun
    jb.push(200, ramp(200, 100), 0.2)
    out = np.concatenate([jb.pull(150), jb.pull(150)])
    assert np.array_equal(out, ramp(0, 300))
    assert jb.stats.underruns == 0 and jb.stats.start_skipped_samples == 0


def test_target_follows_arrival_jitter_and_forgets_it() -> None:
    jb = buffer(floor=20, window_s=10.0)
    for k in range(100):  # steady: one 10 ms frame every 10 ms
        jb.push(10 * k, ramp(0, 10), k * 0.010)
    assert jb.jitter_samples == 0
    assert jb.target_samples == 20  # the floor: more than jitter needs
    for k in range(100, 120):  # then a rough patch: every other frame 80 ms late
        jb.push(10 * k, ramp(0, 10), k * 0.010 + 0.080 * (k % 2))
    assert jb.jitter_samples == 80 and jb.target_samples == 85  # jitter + half a frame
    jb.pull(5)
    assert jb.target_samples == 90  # a device block more: it must be there before a pull
    for k in range(120, 2200):  # 20 s of calm later the rough patch is out of the window
        jb.push(10 * k, ramp(0, 10), k * 0.010 + 0.080)
    assert jb.jitter_samples == 0


def test_blocks_cut_into_packets_and_in_step_with_the_device_are_not_jitter() -> None:
    """A sender's 10-sample capture blocks leave as 4 + 4 + 2 sample packets that arrive
    together 1 ms after each block; the device pulls 10 samples 5 ms after each arrival."""
    jb = buffer()
    for k in range(1500):  # 15 s: longer than the 10 s window
        arrival = (k + 1) / 100 + 0.001
        for start, n in ((0, 4), (4, 4), (8, 2)):
            jb.push(10 * k + start, ramp(10 * k + start, n), arrival)
        jb.pull(10, arrival + 0.005)
    # the packets' own transit spreads by 8 ms, but the first sample of a block is 11 ms
    # old when it arrives and the device finds the newest audio 6 ms old: a block + 5 ms,
    # less than the two blocks a device catching up needs (a block + half a frame + the
    # spread would have asked for 10 + 2 + 8)
    assert jb.jitter_samples == 8
    assert jb._need_samples == 5 and jb.target_samples == 2 * 10
    assert jb.stats.underruns == 0


def test_one_stall_does_not_hold_latency_up() -> None:
    jb = buffer(window_s=10.0)
    for k in range(1000):  # one frame in 1000 comes 400 ms late
        jb.push(10 * k, ramp(0, 10), k * 0.010 + (0.4 if k == 500 else 0.0))
    assert jb.jitter_samples == 0


def test_underrun_conceals_waits_and_loses_nothing() -> None:
    jb = buffer(floor=100)
    feed(jb, 0, 100, frame=25)
    assert np.array_equal(jb.pull(50), ramp(1, 50))  # target: the floor
    out = jb.pull(75)
    assert np.array_equal(out[:50], ramp(51, 50)) and not np.any(out[50:])
    assert (jb.stats.underruns, jb.stats.underrun_samples) == (1, 25)
    assert jb.target_samples == 2 * 75 + 37  # an underrun adds half a block at least
    feed(jb, 100, 100, frame=25)  # the slow audio: short of the new target
    assert not np.any(jb.pull(50)) and jb.stats.underruns == 1  # waiting, not a new underrun
    feed(jb, 200, 87)
    assert np.array_equal(jb.pull(50), ramp(101, 50))  # played from where it stopped
    assert jb.stats.late_packets == jb.stats.skipped_samples == 0
    jb.push(300, ramp(0, 10), 61.0)  # a calm minute later the bump is forgotten
    assert jb.target_samples == 2 * 75


def test_after_a_long_dropout_playback_resumes_live() -> None:
    jb = buffer(floor=100)
    feed(jb, 0, 100)
    jb.pull(50)
    jb.pull(100)  # runs dry 50 short: target two blocks + 50
    feed(jb, 100, 400)  # a stall's worth arrives at once
    assert np.array_equal(jb.pull(10), ramp(251, 10))  # 250 behind the newest, not 400
    assert jb.stats.skipped_samples == 150 and jb.depth_samples == 240


def test_underruns_raise_the_target_by_what_they_were_short_up_to_four_blocks() -> None:
    jb = buffer()
    jb.pull(100)
    end = 0
    for _ in range(6):  # audio comes in fits: enough to start, then nothing until it runs dry
        while jb.depth_samples < jb.target_samples:
            jb.push(end, ramp(end, 10), end / RATE)
            end += 10
        underruns = jb.stats.underruns
        while jb.stats.underruns == underruns:
            jb.pull(100)
    short = jb.stats.underrun_samples
    assert 100 * 4 < short <= 100 * 6  # each was short by up to a block
    assert jb.target_samples == 2 * 100 + 4 * 100  # two blocks + at most 4 blocks


def test_playback_starts_live_after_a_burst() -> None:
    jb = buffer(fade_samples=4)
    jb.pull(20)  # the device runs before any audio: silence, no underrun
    feed(jb, 0, 100)  # a sender's first 100 ms come in one go
    out = jb.pull(20)  # target: two blocks; the older 60 are passed over
    assert np.array_equal(out[4:], ramp(65, 16)) and out[0, 0] < 61  # faded in
    assert (jb.stats.start_skipped_samples, jb.stats.skipped_samples) == (60, 0)
    assert jb.depth_samples == 20 and jb.stats.underruns == 0


def test_a_gap_is_skipped_at_its_deadline_and_a_straggler_is_late() -> None:
    jb = buffer(floor=80)  # all of it: playback starts at the first frame
    jb.push(0, ramp(1, 10), 0.0)
    feed(jb, 30, 50)
    out = jb.pull(40)
    assert np.array_equal(out[:10], ramp(1, 10)) and not np.any(out[10:30])
    assert np.array_equal(out[30:], ramp(31, 10))
    assert jb.stats.lost_samples == 20 and jb.stats.underruns == 0
    jb.push(10, ramp(11, 20), 0.05)  # the lost frame turns up after its deadline
    assert (jb.stats.late_packets, jb.stats.late_samples) == (1, 20)


def test_reordered_frames_play_in_timestamp_order() -> None:
    jb = buffer(floor=90)
    jb.push(20, ramp(21, 10), 0.02)
    jb.push(0, ramp(1, 10), 0.02)
    jb.push(10, ramp(11, 10), 0.02)
    feed(jb, 30, 60)
    assert np.array_equal(jb.pull(30), ramp(1, 30))


def test_a_partly_late_frame_keeps_its_timely_part_and_duplicates_are_dropped() -> None:
    jb = buffer(floor=30)  # all of it: playback starts at the first frame
    jb.push(0, ramp(1, 10), 0.0)
    feed(jb, 20, 10)  # 10..19 never came
    jb.pull(10)  # plays 0..9
    jb.pull(10)  # skips 10..19 at their deadline
    jb.pull(10)  # plays 20..29
    jb.push(15, ramp(16, 10), 0.015)  # wholly late
    jb.push(25, ramp(26, 10), 0.025)  # partly late: 30..34 still in time
    jb.push(30, ramp(31, 5), 0.030)  # a duplicate of what is queued
    assert (jb.stats.late_packets, jb.stats.late_samples) == (2, 10)
    feed(jb, 35, 100, frame=5)
    assert np.array_equal(jb.pull(30), ramp(31, 30))


def test_far_too_deep_skips_to_the_present() -> None:
    jb = buffer(floor=100, max_samples=1000, max_excess_samples=200)
    jb.push(0, ramp(0, 100), 0.0)
    jb.pull(10)
    for i in range(1, 5):  # the receiver stalled: audio piles up, arriving on time
        jb.push(100 * i, ramp(100 * i, 100), i * 0.1)
    assert jb.stats.skipped_samples > 0
    assert jb.depth_samples <= jb.target_samples + 200


def test_finish_plays_out_the_rest_without_counting_underruns() -> None:
    jb = JitterBuffer(2, RATE, 1000, 5000, fade_samples=0)
    jb.push(0, np.ones((50, 2), np.int16), 0.0)
    jb.finish()
    out = jb.pull(80)
    assert np.all(out[:50] == 1) and not np.any(out[50:]) and jb.stats.underruns == 0


def test_dropouts_fade_instead_of_clicking() -> None:
    jb = JitterBuffer(1, RATE, 10, 5000, fade_samples=4)
    for ts in range(0, 10, 2):
        jb.push(ts, np.full((2, 1), 1000, np.int16), ts / RATE)
    jb.pull(4)
    out = jb.pull(12)[:, 0]
    assert out.tolist() == [1000] * 6 + [1000, 750, 500, 250, 0, 0]
    for ts in range(10, 40, 2):
        jb.push(ts, np.full((2, 1), 1000, np.int16), ts / RATE)
    assert jb.pull(6)[:, 0].tolist() == [0, 250, 500, 750, 1000, 1000]


def test_empty_frames_and_empty_buffer() -> None:
    jb = buffer()
    jb.push(0, np.zeros((0, 1), np.int16), 0.0)
    assert jb.depth_samples == 0 and not np.any(jb.pull(10))


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(0, RATE, 10, 100)
    with pytest.raises(ValueError):
        JitterBuffer(1, RATE, 100, 100)


def test_a_streams_first_moments_are_not_jitter() -> None:
    settled, raw = buffer(settle_s=0.25), buffer()
    for jb in (settled, raw):
        jb.push(0, ramp(1, 10), 0.0)
        for k in range(1, 100):  # the receiver was busy opening files for the first 80 ms
            jb.push(10 * k, ramp(10 * k + 1, 10), max(0.08, 0.01 * k))
            jb.pull(10)
    assert settled.playing and settled.jitter_samples == 0
    assert raw.jitter_samples >= 20  # without settling, the first 80 ms count as jitter


def test_excess_no_pull_needed_for_a_second_is_trimmed() -> None:
    jb = JitterBuffer(1, RATE, 0, 5000, fade_samples=4, max_excess_samples=1000)
    level = np.full((10, 1), 1000, np.int16)
    outs = []
    for k in range(300):  # one frame in and one block out every 10 ms...
        jb.push(10 * k, level, 0.01 * k)
        if not 100 <= k < 120:  # ...except that the device stalled for 200 ms
            outs.append(jb.pull(10))
        if k == 125:
            assert jb.depth_samples > jb.target_samples + 150  # 200 ms too deep
    out = np.concatenate(outs)[:, 0]
    assert 150 < jb.stats.skipped_samples <= 200  # the unneeded 200 ms went in one cut...
    assert jb.depth_samples <= jb.target_samples  # ...back to the target
    assert np.flatnonzero(out != 1000).tolist() == list(range(10))  # silence before the start
    assert jb.stats.underruns == 0  # and then level audio stays level, across the cut


def test_a_trim_cross_fades_from_what_was_playing() -> None:
    jb = JitterBuffer(
        1, RATE, 50, 5000, fade_samples=4, max_excess_samples=5000, trim_window_s=0.02
    )
    jb.push(0, np.full((60, 1), 1000, np.int16), 0.0)
    first = jb.pull(10)  # starts 50 behind the newest, fading in
    for k in range(100):
        jb.push(60 + 10 * k, np.full((10, 1), -1000, np.int16), 0.0)
    out = np.concatenate([first, *(jb.pull(10) for _ in range(4))])[:, 0]
    assert out[:4].tolist() == [0, 250, 500, 750]
    assert out[4:30].tolist() == [1000] * 26  # the depth was needed at the first pulls...
    assert out[30:34].tolist() == [1000, 500, 0, -500]  # ...then 960 unneeded are cut
    assert np.all(out[34:] == -1000)
    assert jb.stats.skipped_samples == 1020 - 50  # the lowest depth in the window - target


def test_a_resampler_asking_for_a_few_more_does_not_make_the_block_bigger() -> None:
    jb = JitterBuffer(1, 48000, 0, 48000)
    for ts in range(0, 1000, 100):
        jb.push(ts, ramp(ts, 100), ts / 48000)
    jb.pull(259, block=256)
    # two blocks, and a quarter of a millisecond so that swings of the drift controller
    # never make a pull reach into the newest block
    assert jb.target_samples == 2 * 256 + 12 and jb.stats.underruns == 0
