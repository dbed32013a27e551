"""Mouth-to-ear latency of micwire on one JACK clock, the way a listener hears it.

A JACK server with the dummy driver (48 kHz, 256-frame periods = 5.33 ms, like a sound card)
runs a receiver and a sender as separate processes, on real PortAudio streams. A probe
client plays a short chirp every 0.5 s into the sender's capture port and records the
receiver's playback port in the same process callback, so both ends share one clock and
each burst's delay is exact to a sample (found by cross-correlation).

    .venv/bin/python bench/latency.py [--seconds 60] [--json results.json]

Prints p50/p95/max latency, bursts heard, and the receiver's glitch counters for each
configuration. Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from rig import Micwire, Probe, jack_server, receiver

RATE = 48000
PERIOD = 256
BURST_EVERY = RATE // 2


@dataclass
class Config:
    name: str
    send: tuple[str, ...]
    receive: tuple[str, ...] = ()


CONFIGS = [
    # PCM leaves with each capture block (one packet per 5.33 ms period)
    Config("pcm, 5 ms buffer", ("--codec", "pcm"), ("--latency-ms", "5")),
    # --gather: blocks gather into packets of up to a frame (three periods: 16 ms)
    Config("pcm, --gather (20 ms frames)", ("--codec", "pcm", "--gather")),
    Config(
        "opus 10 ms, lowdelay, 10 ms buffer",
        ("--codec", "opus", "--frame-ms", "10", "--application", "lowdelay", "--bitrate", "64000"),
        ("--latency-ms", "10"),
    ),
    Config("defaults (no latency flags)", ()),
]


@dataclass
class Result:
    config: str
    bursts: int
    heard: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    glitches: dict[str, int]  # receiver counters during the measurement
    target_ms: float
    drift_ppm: float


def last_stats(path: Path) -> dict[str, Any]:
    """The newest line the receiver wrote for the stream (they come once a second)."""
    time.sleep(1.1)
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1]) if lines else {}


def chirp() -> np.ndarray:
    n = int(0.02 * RATE)  # 20 ms, 500 Hz -> 8 kHz
    t = np.arange(n) / RATE
    return (0.5 * np.sin(2 * np.pi * (500 * t + (7500 / 0.04) * t * t)) * np.hanning(n)).astype(
        np.float32
    )


def measure(server: str, config: Config, seconds: float, workdir: Path) -> Result:
    env = {"JACK_DEFAULT_SERVER": server}
    stats = workdir / f"stats-{len(config.name)}-{time.monotonic_ns()}.jsonl"
    rx, port = receiver(
        "--output-device", "system", "--stats-json", str(stats), *config.receive, env=env
    )
    probe = Probe(server)
    tx = Micwire(
        "send",
        f"ws://127.0.0.1:{port}",
        "--name",
        "bench",
        "--device",
        "system",
        *config.send,
        env=env,
    )
    try:
        tx.wait_for(r"sending 'bench' from device")
        probe.client.connect(probe.out, probe.wait_port(is_input=True, timeout=10))
        probe.client.connect(probe.wait_port(is_input=False, timeout=10), probe.inp)
        time.sleep(1.0)  # let the jitter buffer settle before measuring
        burst = chirp()
        count = int(seconds * RATE / BURST_EVERY)
        train = np.zeros(count * BURST_EVERY, np.float32)
        for k in range(count):
            train[k * BURST_EVERY : k * BURST_EVERY + len(burst)] = burst
        before = last_stats(stats)
        probe.play(train)
        probe.wait_played(seconds + 10)
        time.sleep(1.0)
        after = last_stats(stats)
    finally:
        tx.signal(signal.SIGINT)
        tx.wait()
        rx.signal(signal.SIGINT)
        rx.wait()
        recorded = probe.recording()
        start = probe.played_at_frame or 0
        probe.close()
    glitches = {
        k: after.get(k, 0) - before.get(k, 0)
        for k in ("underruns", "concealed_samples", "skipped_samples", "late_packets")
    }
    latencies = []
    for k in range(count):
        at = start + k * BURST_EVERY
        window = recorded[at : at + BURST_EVERY]
        if len(window) < len(burst):
            break
        corr = np.correlate(window, burst, mode="valid")
        lag = int(np.argmax(corr))
        seg = window[lag : lag + len(burst)]
        peak = float(np.dot(seg, burst) / (np.linalg.norm(seg) * np.linalg.norm(burst) + 1e-12))
        if peak > 0.8:
            latencies.append(lag / RATE * 1000)
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return Result(
        config.name,
        count,
        len(latencies),
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 95)),
        float(np.max(lat)),
        glitches,
        after.get("target_ms", 0.0),
        after.get("drift_ppm", 0.0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per config")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--only", metavar="TEXT", help="run only the configurations whose name contains TEXT"
    )
    args = parser.parse_args()
    configs = [c for c in CONFIGS if not args.only or args.only in c.name]
    results = []
    with tempfile.TemporaryDirectory() as tmp, jack_server(Path(tmp), period=PERIOD) as server:
        for config in configs:
            results.append(measure(server, config, args.seconds, Path(tmp)))
            r = results[-1]
            print(
                f"{r.config:40s} p50 {r.p50_ms:6.1f} ms  p95 {r.p95_ms:6.1f} ms  "
                f"max {r.max_ms:6.1f} ms  heard {r.heard}/{r.bursts}",
                flush=True,
            )
            g = r.glitches
            print(
                f"{'':40s} glitches: {g['underruns']} underruns, {g['concealed_samples']} "
                f"samples concealed, {g['skipped_samples']} skipped, {g['late_packets']} late; "
                f"buffer target {r.target_ms:.1f} ms"
            )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
