"""Browser mouth-to-ear on loopback: a sender's capture to the moment the monitor page in
Chromium plays it, for Opus and PCM.

A file source with a 20 ms chirp every 0.5 s is sent (in real time, like a microphone) to
a receiver; headless Chromium opens the monitor page and presses Listen. A detector
AudioWorklet on the page's output bus (window.micwire.output, right before the speakers)
notes the AudioContext time each chirp begins; AudioContext.getOutputTimestamp() turns
that into the wall-clock time the browser says it leaves the speakers (so the page's
jitter buffer and the reported output latency are in). The chirp's capture time is the
stream's start (the sidecar's start_utc, the sender's clock) plus its position; both
clocks are this machine's. Also printed: the page's own latency figure.

    .venv/bin/python bench/browser_latency.py [--seconds 20]

Prints p50/p95 per configuration; not a test. (Headless Chromium plays to a fake output
device; the output latency it reports for it is part of the figure.)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests" / "web")]
from browser import browser_page  # noqa: E402
from rig import Micwire, receiver  # noqa: E402

RATE = 48000
EVERY = RATE // 2

DETECTOR = """
class Detector extends AudioWorkletProcessor {
  constructor() { super(); this.quiet = 0; }
  process(inputs) {
    const x = inputs[0] && inputs[0][0];
    if (x) {
      for (let i = 0; i < x.length; i++) {
        if (Math.abs(x[i]) > 0.05) {
          if (this.quiet > sampleRate * 0.3) this.port.postMessage(currentTime + i / sampleRate);
          this.quiet = 0;
        } else this.quiet++;
      }
    }
    return true;
  }
}
registerProcessor('detector', Detector);
"""

SETUP = """
async (code) => {
  const mw = window.micwire;
  const url = URL.createObjectURL(new Blob([code], {type: 'text/javascript'}));
  await mw.ctx.audioWorklet.addModule(url);
  const node = new AudioWorkletNode(mw.ctx, 'detector');
  window.heard = [];
  node.port.onmessage = (e) => {
    const t = mw.ctx.getOutputTimestamp();
    window.heard.push(performance.timeOrigin + t.performanceTime + (e.data - t.contextTime) * 1000);
  };
  mw.output.connect(node);
}
"""


def chirps(seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    signal_ = np.zeros(n, np.float32)
    t = np.arange(int(0.02 * RATE)) / RATE
    burst = (0.5 * np.sin(2 * np.pi * (500 + 60000 * t) * t) * np.hanning(len(t))).astype(
        np.float32
    )
    for start in range(EVERY // 2, n - len(burst), EVERY):
        signal_[start : start + len(burst)] = burst
    return signal_


def run(
    work: Path, name: str, send: tuple[str, ...], page_query: str, seconds: float
) -> dict[str, float]:
    source = work / "chirps.wav"
    sf.write(str(source), chirps(seconds + 10), RATE, subtype="PCM_16")
    rec = work / f"rec-{name.replace(' ', '_')}"
    rx, port = receiver("--no-play", "--record", str(rec))
    tx = Micwire(
        "send", f"ws://127.0.0.1:{port}", "--name", "probe", "--source", f"file:{source}", *send
    )
    try:
        rx.wait_for("stream 'probe' from")
        with browser_page(f"http://127.0.0.1:{port}", viewport=(400, 700), bypass_csp=True) as page:
            page.goto("/" + page_query)
            page.locator('article.stream[data-stream="probe"] button.listen').click()
            page.wait_for_function(
                "() => { const l = window.micwire.listening['probe']; return l && l.packets > 20; }"
            )
            page.evaluate(SETUP, DETECTOR)
            own: list[float] = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.5)
                value = page.evaluate("() => window.micwire.listening['probe'].latencyMs")
                if value:
                    own.append(float(value))
            heard = page.evaluate("() => window.heard")
            state = page.evaluate("() => window.micwire.listening['probe']")
    finally:
        tx.signal(signal.SIGINT)
        tx.wait()
        rx.signal(signal.SIGINT)
        rx.wait()
    sidecar = json.loads(next(rec.glob("probe-*.json")).read_text())
    start = datetime.fromisoformat(sidecar["start_utc"]).timestamp()
    first = EVERY // 2 / RATE
    delays = []
    for wall in heard:
        since = wall / 1000 - start - first
        k = int(np.floor(since / 0.5))
        delays.append((since - k * 0.5) * 1000)
    return {
        "p50": float(np.percentile(delays, 50)) if delays else float("nan"),
        "p95": float(np.percentile(delays, 95)) if delays else float("nan"),
        "heard": len(delays),
        "page_p50": float(np.median(own)) if own else float("nan"),
        "state": {
            k: state.get(k)
            for k in (
                "targetMs",
                "lowMs",
                "queuedMs",
                "underruns",
                "skippedMs",
                "startSkippedMs",
                "concealedMs",
                "driftPpm",
                "codecPath",
                "outputRateHz",
            )
        },
    }


OPUS_10 = ("--codec", "opus", "--frame-ms", "10", "--application", "lowdelay", "--bitrate", "64000")
PCM_10 = ("--codec", "pcm", "--frame-ms", "10")  # a file source's blocks are frames
CONFIGS = [
    ("opus 10 ms", OPUS_10, ""),
    ("pcm 10 ms", PCM_10, ""),
    ("opus 20 ms (defaults)", ("--codec", "opus"), ""),
    ("pcm 20 ms (defaults)", ("--codec", "pcm"), ""),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, send, query in CONFIGS:
            if args.only not in name:
                continue
            r = run(Path(tmp), name, send, query, args.seconds)
            print(
                f"{name:32s} capture->heard p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  "
                f"({r['heard']:.0f} chirps)   the page's own figure p50 {r['page_p50']:6.1f} ms"
            )
            print("    page player at the end:", r["state"])


if __name__ == "__main__":
    main()
