"""Speed and quality of the mixer's resampler (common/resample.py) beside python-soxr.

Each resampler converts 20 s of stereo noise 48 -> 44.1 kHz the way a device callback
pulls it, 256 output frames per call (SincResampler with a drift ratio that changes every
call; soxr's ResampleStream fed 256 * 48000/44100 input frames per call, fixed ratio HQ,
and variable-rate with set_io_ratio every call). Reports output frames per second of one
core (CPU time, best of ``--repeat``: the least disturbed run), what each holds back (its
latency, in input samples: for soxr what went in 16 samples at a time and has not come
out, for SincResampler the input it needs past the sample it outputs) and the SNR of a
1 kHz tone through it at the nominal ratio (the best-fitting 1 kHz sine is the signal,
the rest noise and distortion). Then the cost of one mixer block
(256 frames, stereo device) with 1, 10 and 40 mono inputs at 0 dB, the first of them
panned (the common case is the plain sum).

    .venv/bin/python bench/resample.py [--seconds 20] [--repeat 3] [--json out.json]

Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import soxr

from micwire.common.mixer import Mixer, MixSettings
from micwire.common.resample import SincResampler

RATE_IN, RATE_OUT, BLOCK = 48000, 44100, 256


def sinc_run(signal: np.ndarray, drift: bool) -> np.ndarray:
    resampler = SincResampler(signal.shape[1], RATE_IN, RATE_OUT)
    out, position, call = [], 0, 0
    while True:
        ratio = 1 + 1e-4 * np.sin(call / 50) if drift else 1.0
        need = resampler.needed(BLOCK, ratio)
        if position + need > len(signal):
            return np.concatenate(out)
        out.append(resampler.process(signal[position : position + need], BLOCK, ratio))
        position += need
        call += 1


def soxr_run(signal: np.ndarray, vr: bool, drift: bool = True) -> np.ndarray:
    top = RATE_IN * 1.001 if vr else RATE_IN
    stream = soxr.ResampleStream(top, RATE_OUT, signal.shape[1], dtype="float32", vr=vr)
    step = round(BLOCK * RATE_IN / RATE_OUT)
    out = []
    for call, start in enumerate(range(0, len(signal), step)):
        if vr:
            ratio = 1 + 1e-4 * np.sin(call / 50) if drift else 1.0
            stream.set_io_ratio(RATE_IN * ratio, RATE_OUT)
        out.append(stream.resample_chunk(signal[start : start + step]))
    return np.concatenate(out)


def soxr_held(vr: bool) -> float:
    """Input samples fed in 16-sample pieces that have not come out yet: its latency."""
    stream = soxr.ResampleStream(RATE_IN * 1.001 if vr else RATE_IN, RATE_OUT, 1, vr=vr)
    if vr:
        stream.set_io_ratio(RATE_IN, RATE_OUT)
    silence = np.zeros(16, np.float32)
    out = sum(len(stream.resample_chunk(silence)) for _ in range(RATE_IN // 16))
    return RATE_IN - out * RATE_IN / RATE_OUT


def sinc_held() -> float:
    """Input samples past the one it outputs that must have arrived: its latency."""
    return float(SincResampler(1, RATE_IN, RATE_OUT).needed(1) - 1)


def tone_snr_db(run: Callable[[np.ndarray], np.ndarray]) -> float:
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(RATE_IN * 2) / RATE_IN)
    out = run(tone[:, None].astype(np.float32))[2000:, 0].astype(np.float64)
    phase = 2 * np.pi * 1000 / RATE_OUT * np.arange(len(out))
    basis = np.stack([np.sin(phase), np.cos(phase)])
    fit, *_ = np.linalg.lstsq(basis.T, out, rcond=None)
    noise = out - fit @ basis
    return float(10 * np.log10(np.sum((fit @ basis) ** 2) / np.sum(noise**2)))


def mixer_block_us(inputs: int, repeat: int) -> float:
    mixer = Mixer(2, RATE_IN)
    blocks = np.random.default_rng(1).uniform(-0.01, 0.01, (inputs, BLOCK, 1)).astype(np.float32)
    for index in range(inputs):
        mixer.add_input(str(index), 1, MixSettings(pan=-0.5 if index == 0 else 0.0))
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(500):
            for index in range(inputs):
                mixer.feed(str(index), blocks[index])
            mixer.render(BLOCK)
        best = min(best, (time.perf_counter() - began) / 500 * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (int(args.seconds * RATE_IN), 2))
    noise = noise.astype(np.float32)
    # (what is timed: drift on where it can be; the tone's SNR: at the nominal ratio)
    Run = Callable[[np.ndarray], np.ndarray]
    runs: dict[str, tuple[Run, Run, float]] = {
        "micwire SincResampler (64 taps, drift every call)": (
            lambda s: sinc_run(s, True),
            lambda s: sinc_run(s, False),
            sinc_held(),
        ),
        "soxr ResampleStream HQ, fixed ratio": (
            lambda s: soxr_run(s, False),
            lambda s: soxr_run(s, False),
            soxr_held(False),
        ),
        "soxr ResampleStream variable-rate (set_io_ratio every call)": (
            lambda s: soxr_run(s, True),
            lambda s: soxr_run(s, True, drift=False),
            soxr_held(True),
        ),
    }
    results = []
    for name, (run, steady, held) in runs.items():
        best = float("inf")
        for _ in range(args.repeat):
            began = time.process_time()
            frames = len(run(noise))
            best = min(best, time.process_time() - began)
        results.append(
            {
                "resampler": name,
                "output_frames_per_s": frames / best,
                "realtime_stereo_streams_per_core": frames / best / RATE_OUT,
                "held_input_samples": held,
                "tone_1khz_snr_db": tone_snr_db(steady),
            }
        )
    for row in results:
        print(
            f"{row['resampler']:<62} {row['output_frames_per_s'] / 1e6:6.2f} M frames/s"
            f" ({row['realtime_stereo_streams_per_core']:5.0f} stereo streams/core)"
            f"  holds {row['held_input_samples']:5.0f} samples"
            f"  1 kHz SNR {row['tone_1khz_snr_db']:5.1f} dB"
        )
    mix = {str(n): mixer_block_us(n, args.repeat) for n in (1, 10, 40)}
    for n, us in mix.items():
        print(f"mixer: one {BLOCK}-frame stereo block with {n:>2} mono inputs: {us:7.1f} us")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"resamplers": results, "mixer_block_us": mix}, file, indent=1)


if __name__ == "__main__":
    main()
