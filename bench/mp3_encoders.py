"""CPU cost of writing a live 48 kHz stream to MP3: libsndfile (today) against Mp3Writer.

Encodes the same synthetic minute (speech-like harmonics with syllable envelopes, then
chords and noise, at a realistic level) the way a recording does: writes of a fixed size,
a flush every second, close at the end. Reports:

- CPU time (``time.process_time``, plus child processes) per second of audio, i.e. the
  share of one core a real-time stream costs: the best of ``--repeat`` runs, taken
  round-robin (the machine may be busy with other things: the best run is the least
  disturbed, and every configuration gets the same chances);
- the bitrate each file ended up with;
- a crude quality figure: the median, over 21 ms blocks and the bands (about a third of an
  octave) that carry signal, of signal-to-noise per band (noise = decoded - original, so
  only for files that decode aligned and exact). No listening test: it only shows where an
  encoder stops keeping the noise below the signal band by band (noise shaping).

Where ``gst-launch-1.0`` is installed, GStreamer's ``lamemp3enc`` (CBR 64 kbit/s, from a
WAV file, process start-up included) runs too, for comparison.

    .venv/bin/python bench/mp3_encoders.py [--seconds 60] [--repeat 3] [--json out.json]

Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from micwire.receiver.mp3 import DEFAULT_QUALITY, Mp3Writer

RATE = 48000
Samples = npt.NDArray[np.int16]


def sample_audio(seconds: float, channels: int = 1, rate: int = RATE) -> Samples:
    """Half speech-like (a gliding 100-220 Hz voice with formant-ish harmonics, 4 Hz
    syllables, hiss), half music-like (three-note chords, a little noise)."""
    rng = np.random.default_rng(7)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = 160 + 60 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k * (1.5 if 3 <= k <= 6 else 1.0) for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    speech = voice * syllables + rng.standard_normal(n) * 0.02
    notes = (220.0, 277.2, 329.6, 246.9, 311.1, 370.0)
    chord = np.zeros(n)
    for i, f in enumerate(notes):
        chord += np.sin(2 * np.pi * f * t + i) * (0.6 + 0.4 * np.sin(2 * np.pi * (0.5 + i / 7) * t))
    music = chord + rng.standard_normal(n) * 0.05
    mixed = np.where(t < seconds / 2, speech, music)
    mixed *= 0.3 / np.sqrt(np.mean(mixed**2))  # about -10 dBFS RMS
    mono = np.clip(mixed * 32767, -32768, 32767).astype(np.int16)
    if channels == 1:
        result: Samples = mono.reshape(-1, 1)
        return result
    other = np.roll(mono, 37)  # a slightly different right channel
    return np.stack([mono, other], axis=1)


@dataclass
class Result:
    name: str
    block: int
    cpu_percent: float  # of one core, per real-time stream
    kbps: float  # of the file written
    band_snr_db: float | None  # None: the file is not aligned with the input


_BAND_EDGES_HZ = (0, 100, 200, 300, 400, 510, 630, 770, 920, 1080, 1270, 1480, 1720, 2000,
                  2320, 2700, 3150, 3700, 4400, 5300, 6400, 7700, 9500, 12000, 15500)  # fmt: skip


def _band_energies(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    block = 1024
    blocks = len(samples) // block
    spectra = np.abs(
        np.fft.rfft(samples[: blocks * block].reshape(blocks, block) * np.hanning(block))
    )
    power = spectra**2
    freqs = np.fft.rfftfreq(block, 1 / RATE)
    bands = itertools.pairwise(_BAND_EDGES_HZ)
    return np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(1) for lo, hi in bands], 1)


def band_snr_db(path: Path, original: Samples) -> float | None:
    decoded, _ = sf.read(path, dtype="int16", always_2d=True)
    if decoded.shape != original.shape:  # libsndfile's MPEG-1 files are exact; others not
        return None
    signal = _band_energies(original[:, 0].astype(float))
    noise = _band_energies(decoded[:, 0].astype(float) - original[:, 0])
    carried = signal > signal.max() * 1e-6
    snr = 10 * np.log10((signal[carried] + 1e-3) / (noise[carried] + 1e-3))
    return round(float(np.median(snr)), 1)


_SFC_SET_BITRATE_MODE = 0x1305  # sndfile.h
_SF_BITRATE_MODE_CONSTANT = 0


def run_libsndfile(path: Path, samples: Samples, block: int) -> None:
    # receiver/recording.py today: soundfile's MP3, constant bitrate, flush every second
    with sf.SoundFile(
        path, "w", RATE, samples.shape[1], format="MP3", subtype="MPEG_LAYER_III"
    ) as f:
        mode = sf._ffi.new("int*", _SF_BITRATE_MODE_CONSTANT)
        sf._snd.sf_command(f._file, _SFC_SET_BITRATE_MODE, mode, sf._ffi.sizeof("int"))
        # int16 stereo would come out as noise (libsndfile 1.2.2 copies half of each
        # block); float is what works for every channel count
        data = samples if samples.shape[1] == 1 else samples.astype(np.float32) / 32768
        since_flush = 0
        for start in range(0, len(data), block):
            f.write(data[start : start + block])
            since_flush += block
            if since_flush >= RATE:
                f.flush()
                since_flush = 0


def make_run_mp3writer(quality: int) -> Callable[[Path, Samples, int], None]:
    def run(path: Path, samples: Samples, block: int) -> None:
        with Mp3Writer(path, RATE, samples.shape[1], quality=quality) as writer:
            since_flush = 0
            for start in range(0, len(samples), block):
                writer.write(samples[start : start + block])
                since_flush += block
                if since_flush >= RATE:
                    writer.flush()
                    since_flush = 0

    return run


def make_run_gstreamer(wav: Path, engine: str) -> Callable[[Path, Samples, int], None]:
    # the competitor: GStreamer's lamemp3enc (system LAME 3.100), CBR 64 kbit/s; its
    # "standard" engine quality is LAME's default -q 3, "fast" -q 7
    def run(path: Path, samples: Samples, block: int) -> None:
        pipeline = (
            f"filesrc location={wav} ! wavparse ! audioconvert ! audio/x-raw,format=S16LE !"
            f" lamemp3enc target=bitrate cbr=true bitrate={64 * samples.shape[1]}"
            f" encoding-engine-quality={engine} ! filesink location={path}"
        )
        subprocess.run(["gst-launch-1.0", "-q", *pipeline.split()], check=True)

    return run


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_all(
    configs: list[tuple[str, Callable[[Path, Samples, int], None], Samples, int]],
    repeat: int,
    directory: Path,
) -> list[Result]:
    """Run every configuration ``repeat`` times, round-robin so that whatever else the
    machine is doing weighs on all of them alike, and keep each one's best run."""
    best = [float("inf")] * len(configs)
    for _ in range(repeat):
        for i, (_name, run, samples, block) in enumerate(configs):
            start = time.process_time() + _children_cpu_s()
            run(directory / f"{i}.mp3", samples, block)
            best[i] = min(best[i], time.process_time() + _children_cpu_s() - start)
        print(".", end="", flush=True)
    print()
    print(f"{'encoder':36} {'write':>7} {'CPU %':>6} {'kbit/s':>7} {'band SNR dB':>12}")
    results = []
    for i, (name, _run, samples, block) in enumerate(configs):
        path = directory / f"{i}.mp3"
        seconds = len(samples) / RATE
        kbps = os.path.getsize(path) * 8 / seconds / 1000
        result = Result(
            name,
            block,
            round(100 * best[i] / seconds, 2),
            round(kbps, 1),
            band_snr_db(path, samples),
        )
        results.append(result)
        snr = "-" if result.band_snr_db is None else f"{result.band_snr_db:.1f}"
        write = str(block) if block else "-"
        print(f"{name:36} {write:>7} {result.cpu_percent:6.2f} {result.kbps:7.1f} {snr:>12}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    mono = sample_audio(args.seconds)
    stereo = sample_audio(args.seconds, channels=2)
    small, large = 960, RATE // 4  # 20 ms (one Opus frame), 250 ms
    configs: list[tuple[str, Callable[[Path, Samples, int], None], Samples, int]] = [
        ("libsndfile mono (today)", run_libsndfile, mono, small),
        ("libsndfile mono (today)", run_libsndfile, mono, RATE),
    ]
    for quality in sorted({DEFAULT_QUALITY, 2, 3, 7}, key=lambda q: q != DEFAULT_QUALITY):
        chosen = " (default)" if quality == DEFAULT_QUALITY else ""
        for block in (small, large):
            name = f"Mp3Writer mono q{quality}{chosen}"
            configs.append((name, make_run_mp3writer(quality), mono, block))
    configs += [
        ("libsndfile stereo float (today)", run_libsndfile, stereo, small),
        (
            f"Mp3Writer stereo q{DEFAULT_QUALITY}",
            make_run_mp3writer(DEFAULT_QUALITY),
            stereo,
            small,
        ),
    ]

    print(f"{args.seconds:.0f} s of {RATE} Hz audio, best of {args.repeat}; CPU = % of one core")
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.which("gst-launch-1.0"):
            wav = Path(tmp) / "input.wav"
            sf.write(wav, mono, RATE, subtype="PCM_16")
            for engine in ("standard", "fast"):
                name = f"GStreamer lamemp3enc {engine}"
                configs.append((name, make_run_gstreamer(wav, engine), mono, 0))
        else:
            print("(gst-launch-1.0 not found: no GStreamer figures)")
        results = run_all(configs, args.repeat, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
