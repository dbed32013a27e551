"""Capturing at a rate the device takes, sending at the stream's (common/capture.py): which
rates are chosen and what the log says, and the conversion block by block: pitch, level,
length, capture times, and whole frames handed over in time."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from micwire.common.capture import CaptureConverter, CaptureRates, choose_capture_rates
from micwire.common.errors import ParameterError
from micwire.common.framing import HandOff
from micwire.common.resample import SincResampler


def only(*rates: int) -> Callable[[int], bool]:
    """A device that takes ``rates`` and no other."""
    return lambda rate: rate in rates


@pytest.mark.parametrize(
    ("codec", "requested", "frame_ms", "takes", "capture", "send", "notice"),
    [
        # what works today stays as it is: 48 kHz when the device takes it
        ("pcm", None, 20, (44100, 48000), 48000, 48000,
         "capturing at 48000 Hz; sending PCM at 48000 Hz"),
        ("opus", None, 20, (48000,), 48000, 48000,
         "capturing at 48000 Hz; sending Opus at 48000 Hz"),
        ("pcm", 16000, 20, (16000, 48000), 16000, 16000,
         "capturing at 16000 Hz; sending PCM at 16000 Hz"),
        ("opus", 16000, 20, (16000,), 16000, 16000,
         "capturing at 16000 Hz; sending Opus at 16000 Hz"),
        # a 44.1 kHz microphone: PCM at its rate, Opus converted to 48 kHz
        ("pcm", None, 20, (44100,), 44100, 44100,
         "capturing at 44100 Hz (the device's rate: it does not take 48000 Hz); "
         "sending PCM at 44100 Hz"),
        ("opus", None, 20, (44100,), 44100, 48000,
         "capturing at 44100 Hz (the device's rate: it does not take 48000 Hz); "
         "resampled to 48000 Hz for Opus"),
        # --rate asks for a rate the device does not take: converted
        ("pcm", 48000, 20, (44100,), 44100, 48000,
         "capturing at 44100 Hz (the device's rate: it does not take 48000 Hz); "
         "resampled to 48000 Hz for PCM"),
        ("pcm", 44100, 20, (48000,), 48000, 44100,
         "capturing at 48000 Hz (the device's rate: it does not take 44100 Hz); "
         "resampled to 44100 Hz for PCM"),
        # 5 ms is 220.5 samples at 44.1 kHz: PCM goes out at 48 kHz, and the log says why
        ("pcm", None, 5, (44100,), 44100, 48000,
         "capturing at 44100 Hz (the device's rate: it does not take 48000 Hz); "
         "resampled to 48000 Hz for PCM (5 ms at 44100 Hz is not a whole number of samples)"),
    ],
)  # fmt: skip
def test_the_rates_chosen_and_what_the_log_says(
    codec: str,
    requested: int | None,
    frame_ms: float,
    takes: tuple[int, ...],
    capture: int,
    send: int,
    notice: str,
) -> None:
    default = 44100 if 44100 in takes else takes[0]
    rates = choose_capture_rates(codec, requested, default, frame_ms, only(*takes))
    assert (rates.capture_hz, rates.send_hz) == (capture, send)
    assert rates.converted == (capture != send)
    assert rates.notice() == notice


def test_a_device_that_takes_neither_rate_is_an_error_that_names_both() -> None:
    with pytest.raises(ParameterError, match="it takes neither 48000 Hz nor its default 32000 Hz"):
        choose_capture_rates("pcm", None, 32000, 20, only(44100))
    # its default is the rate it refused: nothing else to try
    with pytest.raises(ParameterError, match="neither 48000 Hz nor its default 48000 Hz"):
        choose_capture_rates("opus", None, 48000, 20, only())


def convert_in_blocks(
    converter: CaptureConverter, signal: np.ndarray, sizes: list[int], start: float
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Feed ``signal`` in blocks of ``sizes`` (cycled), each timed as captured at
    ``start`` + its position; then flush. The output, and each output block's (position,
    capture time)."""
    outputs, times, position, i = [], [], 0, 0
    while position < len(signal):
        block = signal[position : position + sizes[i % len(sizes)]]
        out, at = converter.convert(block, start + position / converter.capture_hz)
        outputs.append(out)
        times.append((converter.made - len(out), at))
        position, i = position + len(block), i + 1
    out, at = converter.flush()
    outputs.append(out)
    times.append((converter.made - len(out), at))
    return np.concatenate(outputs), times


def tone(n: int, hz: float, rate: int, amplitude: float, channels: int = 1) -> np.ndarray:
    wave = amplitude * 32767 * np.sin(2 * np.pi * hz * np.arange(n) / rate)
    return np.repeat(np.rint(wave).astype(np.int16)[:, None], channels, axis=1)


@pytest.mark.parametrize(("capture", "send"), [(44100, 48000), (48000, 44100), (44100, 16000)])
def test_a_tone_keeps_its_pitch_level_and_length_at_90_db_snr(capture: int, send: int) -> None:
    """Any block sizes: the output is the tone at the rate sent, as long as the input (to
    the sample, rounded up), within 90 dB of the exact tone at that rate (int16 both ways);
    each block's capture time is that of its first sample."""
    n = capture * 2
    signal = tone(n, 1000, capture, 0.9, channels=2)
    sizes = [int(s) for s in np.random.default_rng(capture + send).integers(1, 1500, 50)]
    converter = CaptureConverter(2, capture, send)
    out, times = convert_in_blocks(converter, signal, sizes, start=1_700_000_000.0)
    assert len(out) == -(-n * send // capture) == converter.made
    assert np.array_equal(out[:, 0], out[:, 1])
    exact = 0.9 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(len(out)) / send)
    # (the ends are where the input starts from and ends in silence)
    error = out[100:-100, 0] - exact[100:-100]
    snr = 10 * np.log10(np.sum(exact[100:-100] ** 2) / np.sum(error**2))
    assert snr >= 90, snr
    assert all(abs(at - (1_700_000_000.0 + k / send)) < 1e-6 for k, at in times)


def test_full_scale_does_not_wrap_around() -> None:
    """A full-scale square wave overshoots (Gibbs) past int16 after the filter: clipped,
    not wrapped around to the other sign."""
    square = np.where(np.arange(4410) % 100 < 50, 32767, -32768).astype(np.int16)[:, None]
    out, _ = convert_in_blocks(CaptureConverter(1, 44100, 48000), square, [441], 0.0)
    exact = SincResampler(1, 44100, 48000).process(
        np.concatenate([square, np.zeros((32, 1))]).astype(np.float32), len(out)
    )
    assert exact.max() > 32767.5 and exact.min() < -32768.5  # it does overshoot
    assert np.array_equal(out, np.rint(np.clip(exact, -32768, 32767)).astype(np.int16))


def test_nothing_captured_flushes_nothing() -> None:
    out, _ = CaptureConverter(1, 44100, 48000).flush()
    assert out.shape == (0, 1)


@pytest.mark.parametrize("nudge", [0.0, 0.5])
def test_the_hand_off_counts_what_conversion_will_have_made(nudge: float) -> None:
    """Whatever the capture thread is told :meth:`ready` makes is there once what it held
    is converted — also with the resampler's float position half a sample beyond the exact
    one (never seen: the error stays below 1e-9 samples; a frame's last sample would then
    come with the next block, not an error)."""
    converter = CaptureConverter(1, 44100, 48000)
    converter._resampler._position += nudge  # as a float error would leave it
    sizes = [int(s) for s in np.random.default_rng(7).integers(1, 700, 300)]
    signal = tone(sum(sizes), 440, 44100, 0.5)
    taken = 0
    for size in sizes:
        converter.convert(signal[taken : taken + size], 0.0)
        taken += size
        assert converter.made >= converter.ready(taken)
        assert converter.made - converter.ready(taken) <= 2


def test_opus_frames_of_the_rate_sent_go_with_the_period_that_completes_them() -> None:
    """A 44.1 kHz card's periods, 48 kHz Opus frames: each hand-off carries every frame
    the resampler can complete, and a frame never waits for a later period."""
    converter = CaptureConverter(1, 44100, 48000)
    hand_off = HandOff(960, whole_frames=True, ready=converter.ready)
    signal = tone(44100 * 2, 440, 44100, 0.5)
    taken, frames_made, handed = 0, 0, 0
    for _ in range(len(signal) // 256):
        taken += 256
        if hand_off.add(256):
            converter.convert(signal[handed:taken], 0.0)
            handed = taken
            assert converter.made // 960 > frames_made  # at least one more whole frame
            frames_made = converter.made // 960
        # had the period been handed over, it would have made no further frame
        assert converter.ready(taken) // 960 == frames_made
    assert frames_made >= 2 * 48000 // 960 - 1


def test_pcm_from_a_converted_card_goes_in_packets_of_up_to_a_frame() -> None:
    converter = CaptureConverter(1, 44100, 48000)
    sizes = [256] * 40
    handed = np.cumsum([0, *handed_sizes(HandOff(960, False, converter.ready), sizes)])
    made = [converter.ready(int(n)) for n in handed]
    assert all(0 < b - a <= 960 for a, b in itertools.pairwise(made))
    assert handed_sizes(HandOff(1, False, converter.ready), sizes) == sizes  # every period


def handed_sizes(hand_off: HandOff, sizes: list[int]) -> list[int]:
    out = []
    for n in sizes:
        pending = hand_off.pending + n
        if hand_off.add(n):
            out.append(pending)
    return out


def test_capture_rates_say_whether_they_convert() -> None:
    assert not CaptureRates(48000, 48000, "pcm").converted
    assert CaptureRates(44100, 48000, "opus", 48000).converted
