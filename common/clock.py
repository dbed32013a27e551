"""A sender's clocks measured against the receiver's (pure): the groundwork of sessions, where
several senders' tracks must line up on one timeline to a few milliseconds.

Senders' wall clocks are not trusted (a laptop can be seconds off), and a sender's "48 kHz"
is 48 kHz times (1 + tens of ppm). Two estimates, both from what the connection carries:

- :class:`ClockOffset`: the sender's wall clock against the receiver's, NTP-style. The
  receiver sends a ping stamped with its clock (``t1``); the sender answers with when it got
  it and when it answered, by its clock (``t2``, ``t3``); the receiver notes when the
  answer came (``t4``). Offset ``((t2 - t1) + (t3 - t4)) / 2``, round trip
  ``(t4 - t1) - (t3 - t2)``. Queueing only ever adds delay, so the exchanges with the least
  round trip are the truest (min-RTT filtering): each ``bucket_s`` keeps its fastest
  exchange, and, once they span ``rate_span_s``, a least-squares line through those
  offsets gives the offset at any moment and the clocks' rate difference (before, the
  fastest exchange's offset: a rate from a few seconds is noise, thousands of ppm). Its
  error is at most half the asymmetry of the path's two directions: at most half the round
  trip (:attr:`ClockOffset.bound_s`).
- :class:`SampleClock`: when each sample was captured, on the receiver's clock. Each packet
  says at which sender-clock time its first sample was captured; mapped through the offset,
  a least-squares line through (position, time) gives the sample rate in receiver seconds
  (the capture device's own clock error, e.g. +200 ppm) and the time of sample 0.

A session then places sample ``n`` of a participant at ``time_of(n)`` on the receiver's
clock, whatever the sender's wall clock says.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Exchange:
    """One ping and its answer: ``t1``, ``t4`` on the receiver's clock, ``t2``, ``t3`` on the
    sender's (seconds)."""

    t1: float
    t2: float
    t3: float
    t4: float

    @property
    def offset_s(self) -> float:
        """The sender's clock minus the receiver's, if the path is symmetric."""
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) / 2

    @property
    def round_trip_s(self) -> float:
        """Time on the network, both ways (the sender's own turnaround left out)."""
        return (self.t4 - self.t1) - (self.t3 - self.t2)


class _Line:
    """Least squares ``y = a + b * (x - x0)`` through points, recomputed on demand."""

    @staticmethod
    def fit(points: list[tuple[float, float]]) -> tuple[float, float, float] | None:
        """(x0, a, b), or None for no points; one point (or all at one x) gives slope 0."""
        if not points:
            return None
        x0 = sum(x for x, _ in points) / len(points)
        y0 = sum(y for _, y in points) / len(points)
        sxx = sum((x - x0) ** 2 for x, _ in points)
        if sxx <= 1e-18:
            return x0, y0, 0.0
        sxy = sum((x - x0) * (y - y0) for x, y in points)
        return x0, y0, sxy / sxx


class ClockOffset:
    """The sender's wall clock against the receiver's, from ping exchanges.

    ``bucket_s``: each stretch this long keeps its fastest exchange; ``max_buckets``: how
    many stretches the line is fitted through (older ones are forgotten: a clock's rate
    wanders slowly, and an hour of 30 s buckets is 120 points); ``rate_span_s``: how long
    the kept exchanges must span before a rate is fitted."""

    def __init__(
        self, bucket_s: float = 30.0, max_buckets: int = 120, rate_span_s: float = 120.0
    ) -> None:
        if bucket_s <= 0 or max_buckets < 1:
            raise ValueError("bucket_s must be positive and max_buckets at least 1")
        self.bucket_s = bucket_s
        self.rate_span_s = rate_span_s
        self._buckets: deque[tuple[int, Exchange]] = deque(maxlen=max_buckets)
        self.exchanges = 0

    def add(self, exchange: Exchange) -> None:
        """An answered ping. One whose numbers cannot be (an answer before its ping) is
        ignored."""
        if exchange.round_trip_s < 0 or exchange.t4 < exchange.t1 or exchange.t3 < exchange.t2:
            return
        self.exchanges += 1
        bucket = math.floor(exchange.t1 / self.bucket_s)
        if self._buckets and self._buckets[-1][0] == bucket:
            if exchange.round_trip_s < self._buckets[-1][1].round_trip_s:
                self._buckets[-1] = (bucket, exchange)
        else:
            self._buckets.append((bucket, exchange))

    def _fit(self) -> tuple[float, float, float] | None:
        midpoints = [((e.t1 + e.t4) / 2, e.offset_s) for _, e in self._buckets]
        if midpoints and midpoints[-1][0] - midpoints[0][0] < self.rate_span_s:
            best = min((e for _, e in self._buckets), key=lambda e: e.round_trip_s)
            return (best.t1 + best.t4) / 2, best.offset_s, 0.0
        return _Line.fit(midpoints)

    def offset_at(self, receiver_time: float) -> float | None:
        """Sender clock minus receiver clock at ``receiver_time`` (None: no exchange yet)."""
        fit = self._fit()
        if fit is None:
            return None
        x0, a, b = fit
        return a + b * (receiver_time - x0)

    @property
    def rate_ppm(self) -> float | None:
        """How much faster the sender's wall clock runs (None until the exchanges span
        ``rate_span_s``)."""
        fit = self._fit()
        if fit is None or self._buckets[-1][1].t1 - self._buckets[0][1].t1 < self.rate_span_s:
            return None
        return fit[2] * 1e6

    @property
    def bound_s(self) -> float | None:
        """The most an offset can be wrong by (half the fastest round trip kept)."""
        if not self._buckets:
            return None
        return min(e.round_trip_s for _, e in self._buckets) / 2

    def to_receiver(self, sender_time: float) -> float | None:
        """A time on the sender's clock, on the receiver's (None: no exchange yet)."""
        fit = self._fit()
        if fit is None:
            return None
        x0, a, b = fit
        # sender = receiver + a + b * (receiver - x0)  =>  solve for receiver
        return (sender_time - a + b * x0) / (1.0 + b)


class SampleClock:
    """When a stream's samples were captured, on the receiver's clock: a line through
    (timeline position, receiver time of capture) of the packets seen.

    The points are kept as one per ``every`` samples (the first packet of each stretch),
    at most ``max_points`` of them (the oldest forgotten), so an hour costs little."""

    def __init__(self, rate_hz: int, every: int | None = None, max_points: int = 4096) -> None:
        if rate_hz < 1 or max_points < 2:
            raise ValueError("a positive rate and room for two points are needed")
        self.rate_hz = rate_hz
        self.every = every if every is not None else rate_hz  # a point a second
        self._points: deque[tuple[int, float]] = deque(maxlen=max_points)

    def add(self, position: int, receiver_time: float) -> None:
        """The sample at ``position`` was captured at ``receiver_time``."""
        if self._points and position // self.every == self._points[-1][0] // self.every:
            return
        if self._points and position < self._points[-1][0]:
            return  # a resend of older audio: its capture time was seen already
        self._points.append((position, receiver_time))

    def _fit(self) -> tuple[float, float, float] | None:
        return _Line.fit([(float(p), t) for p, t in self._points])

    def time_of(self, position: float) -> float | None:
        """When the sample at ``position`` was (or would have been) captured."""
        fit = self._fit()
        if fit is None:
            return None
        x0, a, b = fit
        if len(self._points) < 2:
            b = 1.0 / self.rate_hz
        return a + b * (position - x0)

    @property
    def rate_ppm(self) -> float | None:
        """How much faster than its nominal rate the capture ran, in receiver time."""
        fit = self._fit()
        if fit is None or len(self._points) < 2 or fit[2] <= 0:
            return None
        return (1.0 / (fit[2] * self.rate_hz) - 1.0) * 1e6
