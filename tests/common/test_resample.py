"""The mixer's resampler: rate conversion and drift correction in one step, measured."""

from __future__ import annotations

import numpy as np
import pytest

from micwire.common.resample import SincResampler


def resample(
    signal: np.ndarray, in_rate: int, out_rate: int, ratios: list[float], n_out: int = 256
) -> np.ndarray:
    """Feed ``signal`` the way a device callback pulls: ``n_out`` at a time."""
    resampler = SincResampler(signal.shape[1], in_rate, out_rate)
    position, out = 0, []
    for ratio in ratios:
        need = resampler.needed(n_out, ratio)
        if position + need > len(signal):
            break
        out.append(resampler.process(signal[position : position + need], n_out, ratio))
        position += need
    return np.concatenate(out)


def tone_snr_db(out: np.ndarray, hz_per_sample: float) -> tuple[float, float]:
    """(SNR in dB, amplitude) of a tone at a known frequency: the best-fitting sine of that
    frequency (free amplitude and phase) is the signal, everything else noise+distortion."""
    k = np.arange(len(out))
    basis = np.stack([np.sin(2 * np.pi * hz_per_sample * k), np.cos(2 * np.pi * hz_per_sample * k)])
    fit, *_ = np.linalg.lstsq(basis.T, out, rcond=None)
    signal = fit @ basis
    noise = out - signal
    return 10 * np.log10(np.sum(signal**2) / np.sum(noise**2)), float(np.hypot(*fit))


@pytest.mark.parametrize("ppm", [0.0, 300.0, -2000.0])
def test_1khz_tone_48k_to_44k1_has_at_least_90_db_snr(ppm: float) -> None:
    """The issue's figure: a 1 kHz tone through 48 -> 44.1 kHz, >= 90 dB SNR, also with a
    drift correction on top; the tone keeps its level."""
    rate_in, rate_out, ratio = 48000, 44100, 1 + ppm * 1e-6
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(rate_in * 2) / rate_in)
    out = resample(tone[:, None], rate_in, rate_out, [ratio] * 400)[:, 0].astype(np.float64)
    assert len(out) > rate_out * 1.5
    snr, amplitude = tone_snr_db(out[1000:], 1000 * ratio / rate_out)
    assert snr >= 90.0
    assert abs(20 * np.log10(amplitude / 0.5)) < 0.001


def test_changing_the_ratio_every_block_stays_clean() -> None:
    """The drift controller moves the ratio a little on every block: no discontinuity,
    the tone stays a tone (its frequency follows the ratio)."""
    rate = 48000
    rng = np.random.default_rng(3)
    ratios = list(1 + rng.uniform(-200e-6, 200e-6, 300))
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate * 2) / rate)
    out = resample(tone[:, None], rate, 44100, ratios)[:, 0]
    steps = np.abs(np.diff(out))
    assert steps.max() < 0.5 * 2 * np.pi * 440 / 44100 * 1.01  # the tone's own slope


def test_same_rate_at_ratio_one_passes_samples_through_exactly() -> None:
    signal = np.random.default_rng(0).uniform(-1, 1, (5000, 2)).astype(np.float32)
    out = resample(signal, 48000, 48000, [1.0] * 19)
    assert np.array_equal(out, signal[: len(out)])


def test_it_holds_half_its_taps_of_input_and_adds_no_delay() -> None:
    """Latency: the first output needs input up to taps/2 samples ahead; an impulse comes
    out where it was (no shift on the output's timeline)."""
    resampler = SincResampler(1, 48000, 48000, taps=64)
    assert resampler.delay_samples == 32
    assert resampler.needed(1, 1.0001) == 33
    impulse = np.zeros((2000, 1), np.float32)
    impulse[1000] = 1.0
    out = resampler.process(impulse[: resampler.needed(1500, 1.0001)], 1500, 1.0001)
    assert abs(int(np.argmax(out[:, 0])) - 1000 / 1.0001) < 1


def test_block_sizes_do_not_change_the_output() -> None:
    tone = np.sin(2 * np.pi * 300 * np.arange(20000) / 48000)[:, None].astype(np.float32)
    small = resample(tone, 48000, 44100, [1.0] * 160, n_out=100)
    large = resample(tone, 48000, 44100, [1.0] * 64, n_out=250)
    n = min(len(small), len(large))
    np.testing.assert_allclose(small[:n], large[:n], atol=1e-5)


def test_mono_blocks_may_be_flat_and_zero_outputs_are_fine() -> None:
    resampler = SincResampler(1, 44100, 48000)
    assert resampler.needed(0) == 0
    assert resampler.process(np.zeros(0, np.float32), 0).shape == (0, 1)
    block = np.ones(resampler.needed(10), np.float32)
    assert resampler.process(block, 10).shape == (10, 1)


def test_refuses_short_input_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="needed"):
        SincResampler(1, 48000, 44100).process(np.zeros((3, 1), np.float32), 256)
    with pytest.raises(ValueError, match="taps"):
        SincResampler(1, 48000, 44100, taps=63)
    with pytest.raises(ValueError, match="positive"):
        SincResampler(0, 48000, 44100)
