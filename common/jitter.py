"""Adaptive jitter buffer for live playback (pure and single-threaded; callers lock).

Frames are pushed with their place on the stream timeline (``timestamp``, in samples) and
their arrival time; the audio device pulls fixed-size blocks at its own pace. The buffer
keeps a *read position* on the timeline and plays what is there:

- **Start**: playback starts once ``target`` samples are buffered, ``target`` behind the
  newest audio: what piled up before is passed over, counted in
  ``start_skipped_samples``, so a stream starts live instead of late. Until the first
  estimate the target allows a packet's worth of lateness; the stream's first
  ``settle_s`` (connection set-up, first writes) is left out of the statistics.
- **Adaptive target**: the target is ``floor`` (the user's ``--latency-ms``) or, if more,
  what the measured arrival jitter needs, and at least two device blocks and a quarter
  millisecond (a device that ran a cycle late catches up with two pulls in a row). A sample
  must be here when the device block that holds it is pulled, so the target is one device
  block plus how much later than usual audio arrives: the 95th percentile of each packet's
  transit (``arrival_time - timestamp / rate``) over the last ``window_s`` seconds, minus
  the median *staleness* of the buffer seen by the device (``now - end_of_newest_audio /
  rate`` at each pull) over the last ``stale_window_s``. Measuring against what the device
  sees, not against the fastest packet, keeps packets that arrive together (one capture
  block cut into several) or in step with the device clock (one sound server) from counting
  as jitter; with regular frames and unrelated clocks it comes to half a frame. Without
  staleness samples (pulls that give no time) half a frame above the fastest transit stands
  in. Each underrun in the last ``underrun_memory_s`` adds what it was short, and at least
  half a device block (at most four blocks in all). A single stall (a few % of the window)
  does not raise the target at all; sustained jitter raises it within 50 ms, and it falls
  back when the window forgets a rough patch, so late packets never ratchet latency up for
  good.
- **Late vs lost**: a *gap* in timestamps with later audio already here is a lost frame: at
  its deadline it is concealed and skipped, so it never stalls playback, and if it turns up
  afterwards it is dropped as *late*. An empty buffer (nothing newer has arrived, the
  network is just slow) is an *underrun*: the block is concealed, and the read position
  waits for the audio. Once ``target`` is buffered again playback resumes from there, or,
  if a block (and ``trim_min``) more than that piled up meanwhile (a long stall),
  ``target`` behind the newest audio, the rest counted in ``skipped_samples``: the
  dropout is heard once, and playback is not left running late for the drift controller
  to work off over many seconds.
- **Catching up**: depth above ``target + max_excess`` (a sender whose clock runs fast, a
  receiver that stalled) is cut back to the target at once by skipping the oldest audio.
  Excess that stays is trimmed too: if the depth never came within a device block (and
  at least ``trim_min``) of the target for ``trim_window_s`` of playback, nothing in that
  time needed it, and the lowest depth is brought down to the target with a cross-fade.
  Both are counted in ``skipped_samples``. Smaller excess is left to the drift controller
  (``drift.py``), which plays slightly faster until the depth is back at the target, with
  no audible seam.
- **Concealment**: a missing stretch fades out what was playing over ``fade`` samples, and
  audio that resumes after it fades in, so a dropout is a soft gap, not a click. Callers may
  push codec concealment (Opus PLC) for known gaps themselves.

Recordings never go through this buffer; they are written from the packets directly.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]
DOUBLE_BUFFER_MARGIN_S = 0.00025


@dataclass
class JitterStats:
    underruns: int = 0  # times the buffer ran dry while playing
    underrun_samples: int = 0  # samples concealed because nothing had arrived
    late_packets: int = 0  # frames that arrived after their deadline (dropped)
    late_samples: int = 0
    lost_samples: int = 0  # samples skipped at a gap (never arrived in time)
    skipped_samples: int = 0  # audio dropped to catch up with the present
    start_skipped_samples: int = 0  # audio that arrived before playback began, passed over
    concealed_samples: int = 0  # underrun + lost samples played as concealment


class JitterBuffer:
    def __init__(
        self,
        channels: int,
        rate_hz: int,
        floor_samples: int,
        max_samples: int,
        window_s: float = 10.0,
        underrun_memory_s: float = 60.0,
        percentile: float = 95.0,
        max_excess_samples: int | None = None,
        fade_samples: int | None = None,
        settle_s: float = 0.0,
        stale_window_s: float = 1.0,
        trim_window_s: float = 1.0,
        trim_min_s: float = 0.005,
    ) -> None:
        if channels < 1 or rate_hz < 1 or not 0 <= floor_samples < max_samples:
            raise ValueError("need channels, rate >= 1 and 0 <= floor_samples < max_samples")
        self.channels = channels
        self.rate_hz = rate_hz
        self.floor_samples = floor_samples
        self.max_samples = max_samples
        self.window_s = window_s
        self.underrun_memory_s = underrun_memory_s
        self.percentile = percentile
        self.max_excess_samples = max_excess_samples or rate_hz // 10
        self.fade_samples = fade_samples if fade_samples is not None else rate_hz // 500  # 2 ms
        self.settle_s = settle_s
        self.stale_window_s = stale_window_s
        self.trim_window_samples = max(1, round(trim_window_s * rate_hz))
        self.trim_min_samples = round(trim_min_s * rate_hz)
        self._margin = round(DOUBLE_BUFFER_MARGIN_S * rate_hz)
        self._lowest = 0  # lowest depth at a pull in this trim window
        self._window_pulled = 0  # samples pulled in this trim window
        self._first_arrival: float | None = None
        self.stats = JitterStats()
        self._starts: list[int] = []  # chunk timestamps, sorted
        self._chunks: list[Samples] = []
        self._read: int | None = None  # timeline position of the next sample to play
        self._end = 0  # end of the newest audio pushed
        # sliding window of (arrival, transit); min kept in a monotonic deque (O(1) amortised)
        self._transits: deque[tuple[float, float]] = deque()
        self._low: deque[tuple[float, float]] = deque()
        self._next_estimate = 0.0
        self._jitter_samples = 0
        self._jitter_s = 0.0
        self._need_samples: int | None = None  # transit p95 over what the device usually sees
        # (pull time, staleness) samples: how old the newest audio is when the device pulls
        self._stale: deque[tuple[float, float]] = deque(maxlen=1 << 15)
        self._block = 0  # largest device block seen
        self._frame = 0  # largest frame pushed: the lateness allowed until the first estimate
        self._underruns: deque[tuple[float, int]] = deque()  # (time, samples short)
        self._now = 0.0  # latest arrival time seen
        self._last = np.zeros((1, channels), np.int16)  # last sample played (for fades)
        self._fade_in = False
        self._faded = 0
        self.playing = False
        self.started = False  # has played at all
        self.ended = False

    # --- state -------------------------------------------------------------------------
    @property
    def depth_samples(self) -> int:
        """Audio buffered ahead of the read position (gaps included)."""
        if self._read is None:
            return self._end - self._starts[0] if self._starts else 0
        return max(0, self._end - self._read)

    @property
    def target_samples(self) -> int:
        while self._underruns and self._underruns[0][0] < self._now - self.underrun_memory_s:
            self._underruns.popleft()
        # an underrun raises the target by what it was short, and by at least half a block:
        # if audio arrives in step with the device, being short by a sample or by a block
        # both mean the buffer must hold about one more period
        bumps = sum(max(short, self._block // 2) for _, short in self._underruns)
        bump = min(4 * self._block, bumps)
        # until the first estimate, allow a packet's worth of lateness
        need = self._need_samples if self._need_samples is not None else self._frame
        # double buffering: a device that ran a cycle late catches up with two pulls in a
        # row, and audio that arrived in between must not be needed by the second. A hair
        # more than two blocks, or the drift controller's small swings would make every
        # other pull need the newest block's first samples after all
        double = 2 * self._block + self._margin
        needed = max(double, self._block + max(0, need)) + bump
        return min(max(self.floor_samples, needed), self.max_samples - 1)

    @property
    def jitter_samples(self) -> int:
        return self._jitter_samples

    # --- input -------------------------------------------------------------------------
    def push(self, timestamp: int, samples: Samples, arrival_s: float) -> None:
        """Add a frame that starts at ``timestamp``; ``arrival_s`` is a monotonic clock."""
        n = len(samples)
        if n == 0:
            return
        self._frame = max(self._frame, n)
        self._observe(timestamp, arrival_s)
        if self._read is not None and timestamp < self._read:
            if timestamp + n <= self._read:
                self.stats.late_packets += 1
                self.stats.late_samples += n
                return
            samples = samples[self._read - timestamp :]  # the part still in time
            timestamp = self._read
        i = bisect.bisect_left(self._starts, timestamp)
        overlaps_prev = i > 0 and self._starts[i - 1] + len(self._chunks[i - 1]) > timestamp
        overlaps_next = i < len(self._starts) and self._starts[i] < timestamp + len(samples)
        if overlaps_prev or overlaps_next:  # a duplicate: keep what came first
            self.stats.late_packets += 1
            return
        self._starts.insert(i, timestamp)
        self._chunks.insert(i, samples)
        self._end = max(self._end, timestamp + len(samples))
        excess = self.depth_samples - self.target_samples
        if self.playing and excess > self.max_excess_samples:
            self._skip(excess)

    def finish(self) -> None:
        """No more frames will come: play out what is left, then silence (no underruns)."""
        self.ended = True

    @property
    def _settling(self) -> bool:
        """The stream's first ``settle_s``: left out of the statistics."""
        return self._first_arrival is None or self._now - self._first_arrival < self.settle_s

    def _observe(self, timestamp: int, arrival_s: float) -> None:
        """Arrival jitter: spread of (arrival - media time) over the window."""
        self._now = max(self._now, arrival_s)
        if self._first_arrival is None:
            self._first_arrival = arrival_s
        if self._settling:  # connection set-up and first-write costs are not jitter
            return
        transit = arrival_s - timestamp / self.rate_hz
        horizon = arrival_s - self.window_s
        self._transits.append((arrival_s, transit))
        while self._transits[0][0] < horizon:
            self._transits.popleft()
        while self._low and self._low[-1][1] >= transit:
            self._low.pop()
        self._low.append((arrival_s, transit))
        while self._low[0][0] < horizon:
            self._low.popleft()
        # the 95th percentile, not the maximum: one stall (a few % of the window) must not
        # hold the latency up for the whole window. Recomputed at most every 50 ms (arrival
        # time): never per packet, or a receiver that falls behind would spend the time
        # it lacks recomputing the jitter its own lateness makes
        if arrival_s >= self._next_estimate:
            self._next_estimate = arrival_s + 0.05
            values = np.fromiter((t for _, t in self._transits), float, len(self._transits))
            high = float(np.percentile(values, self.percentile))
            self._jitter_s = high - self._low[0][1]
            self._jitter_samples = round(self._jitter_s * self.rate_hz)
            # the device's view over a short window: if the stream's timeline slips against
            # the local clock, transit and staleness move together, and the reference must
            # follow as fast as the 95th percentile does
            while self._stale and self._stale[0][0] < arrival_s - self.stale_window_s:
                self._stale.popleft()
            if self._stale:
                stale = np.fromiter((v for _, v in self._stale), float, len(self._stale))
                self._need_samples = round((high - float(np.median(stale))) * self.rate_hz)
            else:  # no pull times: regular frames leave the newest audio half a frame old
                self._need_samples = self._jitter_samples + self._frame // 2

    # --- output ------------------------------------------------------------------------
    def pull(self, n: int, now_s: float | None = None, block: int | None = None) -> Samples:
        """The next ``n`` samples for the device; ``now_s`` (the same monotonic clock as
        arrivals) lets the buffer see how old its newest audio is at each pull; ``block``
        is the device's block when a resampler asks for a few samples more or fewer."""
        self._block = max(self._block, block or n)
        if now_s is not None and self._end and not self.ended:
            self._stale.append((now_s, now_s - self._end / self.rate_hz))
        out = np.zeros((n, self.channels), dtype=np.int16)
        if not self.playing:
            if not self._starts:
                return out
            if self._read is None:
                self._read = self._starts[0]
            if not self.ended:
                if self.depth_samples < self.target_samples:
                    return out
                self._start_live()
            self.playing = self.started = True
            self._lowest, self._window_pulled = self.depth_samples, 0
        assert self._read is not None
        crossfade = self._trim_unneeded(n)
        filled = 0
        while filled < n:
            chunk_index = bisect.bisect_right(self._starts, self._read) - 1
            if chunk_index >= 0:
                start, chunk = self._starts[chunk_index], self._chunks[chunk_index]
                offset = self._read - start
                if offset < len(chunk):  # audio is here: play it
                    take = min(n - filled, len(chunk) - offset)
                    out[filled : filled + take] = chunk[offset : offset + take]
                    if self._fade_in:
                        self._fade_up(out[filled : filled + take])
                    filled += take
                    self._read += take
                    self._last = out[filled - 1 : filled].copy()
                    continue
            following = chunk_index + 1
            if following < len(self._starts):  # a gap with later audio here: lost, skip it
                missing = min(n - filled, self._starts[following] - self._read)
                self._conceal(out[filled : filled + missing])
                self.stats.lost_samples += missing
                filled += missing
                self._read += missing
                continue
            # nothing newer has arrived: underrun; wait here for the audio
            missing = n - filled
            self._conceal(out[filled:])
            if not self.ended:
                self.stats.underruns += 1
                self.stats.underrun_samples += missing
                self._underruns.append((self._now, missing))
            self.playing = False
            break
        if crossfade is not None:  # what was playing fades out as the present fades in
            k = len(crossfade)
            down = (1.0 - np.arange(k) / k)[:, None]
            mixed = out[:k] + crossfade.astype(np.float32) * down
            out[:k] = np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
        self._forget()
        return out

    @property
    def _trim_threshold(self) -> int:
        """Excess smaller than this is left to the drift controller."""
        return max(self._block, self.trim_min_samples)

    def _trim_unneeded(self, n: int) -> Samples | None:
        """Once per trim window: cut excess depth no pull in the window needed. Returns
        the audio that would have played next, to cross-fade from (or None)."""
        self._lowest = min(self._lowest, self.depth_samples)
        self._window_pulled += n
        if self._window_pulled < self.trim_window_samples:
            return None
        excess = self._lowest - self.target_samples
        before = None
        if excess > self._trim_threshold:
            before = self._peek(min(self.fade_samples, n))
            self._skip(excess)
        self._lowest, self._window_pulled = self.depth_samples, 0
        return before

    def _peek(self, n: int) -> Samples:
        """The next ``n`` samples at the read position, without playing them (zeros where
        nothing has arrived)."""
        assert self._read is not None
        out = np.zeros((n, self.channels), dtype=np.int16)
        i = max(0, bisect.bisect_right(self._starts, self._read) - 1)
        for start, chunk in zip(self._starts[i:], self._chunks[i:], strict=True):
            lo, hi = max(start, self._read), min(start + len(chunk), self._read + n)
            if lo >= self._read + n:
                break
            if lo < hi:
                out[lo - self._read : hi - self._read] = chunk[lo - start : hi - start]
        return out

    def _conceal(self, out: Samples) -> None:
        """Fill a missing stretch: fade the last sample played to zero (no click)."""
        if not self.ended:
            self.stats.concealed_samples += len(out)
        if not self._fade_in and np.any(self._last):
            fade = min(len(out), self.fade_samples)
            if fade:
                ramp = np.linspace(1.0, 0.0, fade, endpoint=False)[:, None]
                out[:fade] = np.rint(self._last.astype(np.float32) * ramp).astype(np.int16)
        self._fade_in, self._faded = self.fade_samples > 0, 0
        self._last = np.zeros_like(self._last)

    def _fade_up(self, block: Samples) -> None:
        """Audio resuming after a gap starts from silence, not with a step."""
        done = self._faded
        n = min(len(block), self.fade_samples - done)
        ramp = ((done + np.arange(n)) / self.fade_samples)[:, None]
        block[:n] = np.rint(block[:n].astype(np.float32) * ramp).astype(np.int16)
        self._faded += n
        if self._faded >= self.fade_samples:
            self._fade_in = False

    def _start_live(self) -> None:
        """Start ``target`` behind the newest audio; what piled up is passed over. On a
        restart after an underrun only a pile-up worth trimming is (a long stall's)."""
        late = self.depth_samples - self.target_samples
        if late > (self._trim_threshold if self.started else 0):
            self._skip(late)

    def _skip(self, n: int) -> None:
        """Drop ``n`` samples of the oldest audio to catch up with the present (counted as
        passed over at the start if playback has not started yet)."""
        assert self._read is not None
        if self.started:
            self.stats.skipped_samples += n
        else:
            self.stats.start_skipped_samples += n
        self._read += n
        self._fade_in, self._faded = self.fade_samples > 0, 0
        self._forget()

    def _forget(self) -> None:
        """Drop chunks that lie wholly before the read position."""
        assert self._read is not None
        while self._starts and self._starts[0] + len(self._chunks[0]) <= self._read:
            self._starts.pop(0)
            self._chunks.pop(0)
