from __future__ import annotations

import numpy as np
import pytest

from micwire.common.drift import DriftController, FractionalResampler


def run_resampler(signal: np.ndarray, ratios: list[float], n_out: int) -> np.ndarray:
    resampler = FractionalResampler(signal.shape[1])
    pos, out = 0, []
    for ratio in ratios:
        need = resampler.needed(n_out, ratio)
        out.append(resampler.process(signal[pos : pos + need], n_out, ratio))
        pos += need
    return np.concatenate(out)


def test_ratio_one_passes_samples_through_exactly() -> None:
    signal = np.random.default_rng(0).integers(-32768, 32767, (5000, 2), dtype=np.int16)
    out = run_resampler(signal, [1.0] * 19, 256)
    assert np.array_equal(out, signal[: len(out)])


@pytest.mark.parametrize("ppm", [-2000, -300, 300, 2000])
def test_ratio_changes_the_rate_without_distortion(ppm: float) -> None:
    rate, hz = 48000, 1000.0
    ratio = 1 + ppm * 1e-6
    signal = np.rint(np.sin(2 * np.pi * hz * np.arange(60000) / rate) * 16000).astype(np.int16)
    out = run_resampler(signal[:, None], [ratio] * 200, 256)[:, 0].astype(float)
    # the output is the same tone, its frequency scaled by the ratio, cleanly
    expected = np.sin(2 * np.pi * hz * ratio * np.arange(len(out)) / rate) * 16000
    error = out - expected
    assert np.sqrt(np.mean(error**2)) < 16000 * 10 ** (-60 / 20)  # better than -60 dB


def test_process_refuses_short_input() -> None:
    with pytest.raises(ValueError, match="needed"):
        FractionalResampler(1).process(np.zeros((3, 1), np.int16), 256, 1.0)


@pytest.mark.parametrize("ppm", [-300.0, 0.0, 300.0])
def test_controller_holds_the_depth_and_measures_the_drift(ppm: float) -> None:
    """Simulate a sender clock off by ``ppm``: 20 ms frames arrive on its clock with up to
    5 ms of network jitter, the device pulls 256-sample blocks on ours. The depth must stay
    at the target and the estimate find the drift."""
    rate, target, block, frame = 48000, 2400, 256, 960
    rng = np.random.default_rng(1)
    controller = DriftController(rate)
    depth, produced, played = float(target), 0, 0
    depths = []
    for step in range(int(90 * rate / block)):
        now = step * block / rate
        while (produced + frame) / (rate * (1 + ppm * 1e-6)) <= now:  # frames complete
            produced += frame
            depth += frame
            controller.arrived(now + rng.uniform(0, 0.005), produced)
        ratio = controller.update(now, played, round(depth), target, block / rate)
        depth -= block * ratio
        played += block
        depths.append(depth)
    late = np.array(depths[len(depths) // 2 :])
    assert abs(late.mean() - target) < frame  # the saw-tooth's mean sits at the target
    assert late.max() - late.min() < frame + block + 240  # frame + block, 5 ms wander
    assert controller.drift_ppm == pytest.approx(ppm, abs=15)
    # each clock against the local one: the sender's is off by ppm, the device's is exact
    assert controller.sender_clock_ppm == pytest.approx(ppm, abs=15)
    assert controller.device_clock_ppm == pytest.approx(0.0, abs=1)


def test_clock_figures_wait_for_enough_data() -> None:
    controller = DriftController(48000, settle_s=5.0)
    assert controller.sender_clock_ppm is None and controller.device_clock_ppm is None
    for i in range(200):  # 2 s only: measured, but not for long enough to say
        controller.arrived(i * 0.01, 480 * (i + 1))
        controller.update(i * 0.01, 480 * i, 2400, 2400, 0.01)
    assert controller.sender_clock_ppm is None and controller.device_clock_ppm is None


def test_rate_estimator_needs_data_and_finds_the_slope() -> None:
    from micwire.common.drift import RateEstimator

    estimator = RateEstimator(window_s=10.0)
    assert estimator.rate() is None
    for i in range(100):
        estimator.add(i * 0.01, 480.0 * i + 1e6)
    assert estimator.rate() == pytest.approx(48000.0)
