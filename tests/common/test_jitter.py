from __future__ import annotations

import numpy as np
import pytest
from micwire.common.jitter import JitterBuffer


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int16)[:, None]


def test_waits_for_the_target_then_plays_in_order() -> None:
    jb = JitterBuffer(1, target_samples=300, max_samples=5000)
    jb.push(0, ramp(0, 200))
    assert not np.any(jb.pull(100)) and not jb.playing  # pre-buffering is not an underrun
    jb.push(200, ramp(200, 200))
    out = np.concatenate([jb.pull(150), jb.pull(150)])
    assert np.array_equal(out, ramp(0, 300))
    assert jb.depth_samples == 100 and jb.stats.underruns == 0


def test_underrun_plays_silence_counts_and_rebuffers() -> None:
    jb = JitterBuffer(1, target_samples=100, max_samples=5000)
    jb.push(0, ramp(1, 100))
    out = jb.pull(150)
    assert np.array_equal(out[:100], ramp(1, 100)) and not np.any(out[100:])
    assert (jb.stats.underruns, jb.stats.underrun_samples) == (1, 50)
    jb.push(100, ramp(101, 50))
    assert not np.any(jb.pull(10))  # below target again: wait
    jb.push(150, ramp(151, 60))
    assert np.array_equal(jb.pull(10), ramp(101, 10))


def test_a_timestamp_jump_plays_as_counted_silence() -> None:
    jb = JitterBuffer(1, target_samples=0, max_samples=5000)
    jb.push(0, ramp(1, 10))
    jb.push(30, ramp(31, 10))
    out = jb.pull(40)
    assert np.array_equal(out[:10], ramp(1, 10)) and not np.any(out[10:30])
    assert np.array_equal(out[30:], ramp(31, 10)) and jb.stats.lost_samples == 20


def test_a_huge_jump_is_bounded_by_the_buffer_size() -> None:
    jb = JitterBuffer(1, target_samples=10, max_samples=100)
    jb.push(0, ramp(0, 10))
    jb.push(10**9, ramp(0, 10))
    assert jb.depth_samples <= 100 and jb.stats.lost_samples == 10**9 - 10


def test_late_packets_are_dropped_and_counted() -> None:
    jb = JitterBuffer(1, target_samples=0, max_samples=5000)
    jb.push(0, ramp(0, 100))
    jb.push(50, ramp(0, 10))
    assert jb.stats.late_packets == 1 and jb.depth_samples == 100


def test_overflow_skips_to_the_present() -> None:
    jb = JitterBuffer(1, target_samples=100, max_samples=300)
    for i in range(4):
        jb.push(100 * i, ramp(100 * i, 100))
    assert jb.depth_samples == 100 and jb.stats.overflow_samples == 300
    assert np.array_equal(jb.pull(100), ramp(300, 100))


def test_finish_plays_out_the_rest_without_counting_underruns() -> None:
    jb = JitterBuffer(2, target_samples=1000, max_samples=5000)
    jb.push(0, np.ones((50, 2), np.int16))
    jb.finish()
    out = jb.pull(80)
    assert np.all(out[:50] == 1) and not np.any(out[50:]) and jb.stats.underruns == 0


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(0, 10, 100)
    with pytest.raises(ValueError):
        JitterBuffer(1, 100, 100)
