"""Capturing at a rate the input device takes, sending at the rate the stream needs (pure).

A microphone that runs only at 44.1 kHz (many USB headsets, HDMI and webcam mics) refuses
to open at 48 kHz. :func:`choose_capture_rates` decides, from what the device accepts,
the rate to capture at and the rate to send at:

- the device is opened at the rate asked for (``--rate``, else 48 kHz) whenever it takes
  it, so every setup that works today is unchanged; only when it refuses, at its own
  default rate;
- PCM without ``--rate`` is sent at the rate captured (no conversion: the receiver
  records at the rate it gets), unless the frame duration is no whole number of samples
  at that rate (5 ms at 44.1 kHz): then at 48 kHz;
- Opus is sent at 48 kHz (the only Opus rate a 44.1 kHz device maps to without losing
  its top octave), PCM with ``--rate`` at that rate: converted from the rate captured
  when the device took another.

:class:`CaptureConverter` does that conversion, block by block as capture hands them
over, with :class:`~micwire.common.resample.SincResampler` at a fixed ratio: it holds
back 32 input samples (0.7 ms at 44.1 kHz) and keeps a 1 kHz tone at >= 90 dB SNR.
libsoxr (python-soxr's ``ResampleStream``, HQ) would hold back 115 to 1000 output
samples (2.4 to 21 ms at 48 kHz), varying from block to block, measured with 882-sample
blocks 44.1 -> 48 kHz: a live sender must not get that much later, nor that irregular.
The timeline the sender numbers, spools and limits (``--duration``) is in samples of the
rate sent; :meth:`CaptureConverter.ready` tells the capture thread how many such samples
what it holds makes, so that it hands over whole frames of the rate sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import ParameterError
from .protocol import StreamParams
from .resample import SincResampler

Samples = npt.NDArray[np.int16]

#: The rate a device is opened at when nothing else is asked for, and Opus's rate.
DEFAULT_RATE_HZ = 48000


@dataclass(frozen=True)
class CaptureRates:
    """The rate a device is opened at and the rate the stream is sent at."""

    capture_hz: int
    send_hz: int
    codec: str
    #: The device refused the rate asked for (this one): it runs at its default rate.
    refused_hz: int | None = None
    #: Why PCM is sent at another rate than captured without --rate asking for it.
    why_converted: str = ""

    @property
    def converted(self) -> bool:
        return self.capture_hz != self.send_hz

    def notice(self) -> str:
        """One line for the log: what was chosen, and why when it is not what was asked."""
        text = f"capturing at {self.capture_hz} Hz"
        if self.refused_hz is not None:
            text += f" (the device's rate: it does not take {self.refused_hz} Hz)"
        codec = "Opus" if self.codec == "opus" else "PCM"
        if not self.converted:
            return f"{text}; sending {codec} at {self.send_hz} Hz"
        text += f"; resampled to {self.send_hz} Hz for {codec}"
        return f"{text} ({self.why_converted})" if self.why_converted else text


def choose_capture_rates(
    codec: str,
    requested_hz: int | None,
    device_default_hz: int,
    frame_ms: float,
    accepts: Callable[[int], bool],
) -> CaptureRates:
    """The rates for a device whose default rate is ``device_default_hz`` and that takes a
    rate when ``accepts(rate)``; ``requested_hz`` is ``--rate`` (None: not given). Raises
    ParameterError when the device takes neither the rate asked for nor its own."""
    if requested_hz is not None:
        wanted: int | None = requested_hz
    elif codec == "opus":
        wanted = DEFAULT_RATE_HZ
    else:
        wanted = None  # PCM: whatever the device runs at
    first = wanted if wanted is not None else DEFAULT_RATE_HZ
    refused: int | None = None
    capture = first
    if not accepts(first):
        refused, capture = first, device_default_hz
        if capture == first or not accepts(capture):
            raise ParameterError(f"it takes neither {first} Hz nor its default {capture} Hz")
    if wanted is not None:
        return CaptureRates(capture, wanted, codec, refused)
    try:
        StreamParams("pcm", capture, 1, frame_ms).check()
    except ParameterError as exc:
        # e.g. 5 ms at 44.1 kHz is 220.5 samples: PCM at the rate that fits every frame
        return CaptureRates(capture, DEFAULT_RATE_HZ, codec, refused, str(exc))
    return CaptureRates(capture, capture, codec, refused)


class CaptureConverter:
    """Captured blocks (int16, ``(n, channels)``) at ``capture_hz`` in, blocks at
    ``send_hz`` out, continuous across calls. Output sample ``k`` is input position
    ``k * capture_hz / send_hz``: the two timelines start together, and each output
    block's capture time is its first sample's."""

    def __init__(self, channels: int, capture_hz: int, send_hz: int) -> None:
        self.channels = channels
        self.capture_hz = capture_hz
        self.send_hz = send_hz
        self._resampler = SincResampler(channels, capture_hz, send_hz)
        self._half = self._resampler.delay_samples
        #: Input samples taken, output samples made.
        self.taken = 0
        self.made = 0
        #: The last block given: its first sample's input position, and capture time.
        self._origin = (0, 0.0)

    def _target(self, taken: int) -> int:
        """Output samples that ``taken`` input samples make: those whose input position
        lies at least half the filter before the newest sample (exact, in integers)."""
        if taken <= self._half:
            return 0
        return -(-(taken - self._half) * self.send_hz // self.capture_hz)

    def ready(self, taken: int) -> int:
        """Output samples (at least) that ``taken`` input samples in all make: what the
        capture thread counts frames of the rate sent in. One input sample short of
        :meth:`_target`, so that a float position a hair beyond the exact one never leaves
        a frame's last sample for the next hand-off."""
        return self._target(taken - 1)

    def convert(self, samples: Samples, capture_time: float) -> tuple[Samples, float]:
        """The output ``samples`` complete, and the capture time of its first sample
        (``capture_time`` is that of ``samples[0]``)."""
        self._origin = (self.taken, capture_time)
        self.taken += len(samples)
        n_out = self._target(self.taken) - self.made
        # the resampler's float positions may need one sample more than the exact count
        while n_out > 0 and self._resampler.needed(n_out) > len(samples):
            n_out -= 1
        return self._process(samples, n_out)

    def flush(self) -> tuple[Samples, float]:
        """At the end of capture: the outputs up to the last input sample, the filter's
        look-ahead filled with silence."""
        n_out = -(-self.taken * self.send_hz // self.capture_hz) - self.made
        silence = np.zeros((self._resampler.needed(n_out), self.channels), np.int16)
        return self._process(silence, n_out)

    def _process(self, samples: Samples, n_out: int) -> tuple[Samples, float]:
        # int16 values as float32 (exact): no scaling on the way in or out
        out = self._resampler.process(samples.astype(np.float32), n_out)
        # the first output's input position, timed from the last block given
        at_input = self.made * self.capture_hz / self.send_hz
        block_start, block_time = self._origin
        first_time = block_time + (at_input - block_start) / self.capture_hz
        self.made += len(out)
        converted: Samples = np.rint(np.clip(out, -32768, 32767)).astype(np.int16)
        return converted, first_time
