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


@pytest.mark.parametrize("ppm", [-300.0, 300.0])
def test_controller_holds_the_depth_and_measures_the_drift(ppm: float) -> None:
    """Simulate a sender clock off by ``ppm``: 20 ms frames arrive on its clock, the device
    pulls 256-sample blocks on ours. The depth must stay bounded and the estimate converge."""
    rate, target, block = 48000, 2400, 256
    controller = DriftController(rate)
    depth, produced, consumed = float(target), 0.0, 0.0
    depths = []
    for step in range(int(120 * rate / block)):  # two minutes
        produced_now = (step + 1) * block * (1 + ppm * 1e-6)
        while produced + 960 <= produced_now:  # whole frames arrive
            produced += 960
            depth += 960
        ratio = controller.update(round(depth), target, block / rate)
        depth -= block * ratio
        consumed += block * ratio
        depths.append(depth)
    late = np.array(depths[len(depths) // 2 :])
    assert abs(late.mean() - target) < 0.2 * rate / 1000 + 480  # within a frame of the target
    assert late.max() - late.min() < 960 + 256 + 240  # frame + block saw-tooth, 5 ms wander
    assert controller.drift_ppm == pytest.approx(ppm, abs=30)
