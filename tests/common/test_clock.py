"""A sender's clocks against the receiver's (common/clock.py): NTP-style offset with min-RTT
filtering, the clocks' rate, and when each sample was captured on the receiver's clock."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from micwire.common.clock import ClockOffset, Exchange, SampleClock


class SenderClock:
    """A sender's wall clock: ``offset_s`` ahead of the receiver's at receiver time 0, and
    running ``ppm`` fast."""

    def __init__(self, offset_s: float, ppm: float) -> None:
        self.offset_s, self.ppm = offset_s, ppm

    def at(self, receiver_time: float) -> float:
        return receiver_time * (1 + self.ppm * 1e-6) + self.offset_s

    def offset_at(self, receiver_time: float) -> float:
        return self.at(receiver_time) - receiver_time


def exchanges(
    clock: SenderClock,
    seconds: float,
    every_s: float,
    rng: np.random.Generator,
    out_s: float = 0.05,
    back_s: float = 0.05,
    queueing_s: float = 0.02,
) -> list[Exchange]:
    """Pings every ``every_s``: ``out_s``/``back_s`` one way each, plus random queueing
    (exponential, mean ``queueing_s``) on the way out only: an asymmetric, busy path."""
    found = []
    for t1 in np.arange(0.0, seconds, every_s):
        arrive = t1 + out_s + rng.exponential(queueing_s)
        answer = arrive + 0.0005
        t4 = answer + back_s + rng.exponential(queueing_s / 10)
        found.append(Exchange(t1, clock.at(arrive), clock.at(answer), t4))
    return found


def test_one_exchange_on_a_symmetric_path_is_exact() -> None:
    e = Exchange(t1=100.0, t2=105.010, t3=105.011, t4=100.021)
    assert e.offset_s == pytest.approx(5.0)
    assert e.round_trip_s == pytest.approx(0.020)


def test_an_hour_through_a_busy_50_ms_link_with_a_clock_seconds_off_and_200_ppm_fast() -> None:
    """The fastest exchange of each stretch is the truest: a plain average of every
    exchange would be off by half the mean queueing (10 ms here), the filtered line is
    within a millisecond and finds the rate."""
    rng = np.random.default_rng(7)
    clock = SenderClock(offset_s=-3.7, ppm=200.0)
    estimate = ClockOffset()
    found = exchanges(clock, 3600, 2.0, rng)
    for exchange in found:
        estimate.add(exchange)
    end = 3600.0
    error = estimate.offset_at(end) - clock.offset_at(end)  # type: ignore[operator]
    assert abs(error) < 0.001, error
    assert estimate.rate_ppm == pytest.approx(200.0, abs=2.0)
    naive = np.mean([e.offset_s for e in found[-15:]]) - clock.offset_at(end)
    assert abs(naive) > 0.005  # what the filter is for
    assert estimate.bound_s is not None and 0.05 <= estimate.bound_s < 0.06
    # a sender timestamp back on the receiver's clock
    assert estimate.to_receiver(clock.at(1234.5)) == pytest.approx(1234.5, abs=0.001)
    assert estimate.exchanges == len(found)


def test_before_any_exchange_nothing_is_claimed() -> None:
    estimate = ClockOffset()
    assert estimate.offset_at(0.0) is None and estimate.rate_ppm is None
    assert estimate.bound_s is None and estimate.to_receiver(5.0) is None
    estimate.add(Exchange(0.0, 10.01, 10.01, 0.02))
    assert estimate.offset_at(99.0) == pytest.approx(10.0)  # one point: no rate yet
    assert estimate.rate_ppm is None


def test_impossible_exchanges_are_ignored() -> None:
    estimate = ClockOffset()
    estimate.add(Exchange(10.0, 5.0, 5.1, 9.0))  # answered before it was asked
    estimate.add(Exchange(10.0, 5.2, 5.1, 10.5))  # the sender answered before it got it
    estimate.add(Exchange(10.0, 5.0, 5.3, 10.1))  # a negative round trip
    assert estimate.exchanges == 0 and estimate.offset_at(10.0) is None


def test_a_slower_exchange_in_the_same_stretch_does_not_replace_the_faster() -> None:
    estimate = ClockOffset(bucket_s=30.0)
    estimate.add(Exchange(1.0, 2.01, 2.01, 1.02))  # offset 1.0, 20 ms
    estimate.add(Exchange(2.0, 3.21, 3.21, 2.22))  # offset 1.2, 220 ms: queued
    estimate.add(Exchange(3.0, 4.005, 4.005, 3.01))  # offset 1.0, 10 ms: faster still
    assert estimate.offset_at(3.0) == pytest.approx(1.0)
    assert estimate.bound_s == pytest.approx(0.005)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ClockOffset(bucket_s=0)
    with pytest.raises(ValueError):
        SampleClock(0)


@given(
    offset_s=st.floats(-30.0, 30.0),
    ppm=st.floats(-300.0, 300.0),
    one_way_s=st.floats(0.0005, 0.2),
)
def test_on_a_symmetric_path_any_clock_is_found(
    offset_s: float, ppm: float, one_way_s: float
) -> None:
    clock = SenderClock(offset_s, ppm)
    estimate = ClockOffset(bucket_s=10.0)
    for t1 in range(0, 600, 5):
        arrive = t1 + one_way_s
        estimate.add(Exchange(t1, clock.at(arrive), clock.at(arrive), arrive + one_way_s))
    assert estimate.offset_at(600.0) == pytest.approx(clock.offset_at(600.0), abs=1e-6)
    assert estimate.rate_ppm == pytest.approx(ppm, abs=0.01)


def test_a_capture_200_ppm_fast_is_found_and_sample_0_placed() -> None:
    """Packets of 960 samples whose capture times (already on the receiver's clock) carry
    a millisecond of scheduling jitter: the line finds the device's rate and sample 0."""
    rng = np.random.default_rng(3)
    rate, start = 48_000, 1000.0
    clock = SampleClock(rate)
    true_rate = rate * (1 + 200e-6)
    for position in range(0, rate * 600, 960):
        clock.add(position, start + position / true_rate + rng.uniform(0, 0.001))
    assert clock.rate_ppm == pytest.approx(200.0, abs=3.0)
    assert clock.time_of(0) == pytest.approx(start + 0.0005, abs=0.0005)
    assert clock.time_of(rate * 600) == pytest.approx(start + 600 / (1 + 200e-6), abs=0.001)


def test_a_sample_clock_keeps_a_point_a_stretch_and_ignores_resends() -> None:
    clock = SampleClock(1000, max_points=3)
    assert clock.time_of(0) is None and clock.rate_ppm is None
    clock.add(0, 10.0)
    assert clock.time_of(500) == pytest.approx(10.5)  # one point: the nominal rate
    clock.add(400, 10.4)  # the same stretch as 0: not kept
    clock.add(1000, 11.0)
    clock.add(500, 99.0)  # older audio sent again: its time was known
    clock.add(2000, 12.0)
    clock.add(3000, 13.0)  # the oldest point goes
    assert clock.time_of(0) == pytest.approx(10.0) and clock.rate_ppm == pytest.approx(0.0)


def test_a_few_seconds_give_no_rate_only_the_fastest_offset() -> None:
    """Exchanges on both sides of a stretch's boundary, seconds apart: a line through two
    such points would claim thousands of ppm (seen: -6448 ppm, 56 ms off after a 10 s
    stream); until the exchanges span two minutes, the fastest one's offset stands."""
    estimate = ClockOffset(bucket_s=30.0)
    estimate.add(Exchange(28.0, 28.5 + 0.010, 28.5 + 0.010, 28.020))  # 0.5 s off, 20 ms
    estimate.add(Exchange(31.0, 31.5 + 0.030, 31.5 + 0.030, 31.032))  # queued out: 2 ms back
    assert estimate.rate_ppm is None
    assert estimate.offset_at(40.0) == pytest.approx(0.5)
    assert estimate.bound_s == pytest.approx(0.010)
