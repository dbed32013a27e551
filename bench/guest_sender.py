"""A browser as the sender: what the guest page (/send) costs and what it puts on the wire,
and how long its audio takes to reach the receiver, for Opus and PCM.

Headless Chromium's fake microphone plays a 12 s sweep with noise (looped); the page is
loaded through a byte-counting TCP proxy in front of a receiver that plays to a JACK dummy
sound card (tests/integration/rig.py), so its live-playback figures are real. For each
configuration:

- **CPU**: user + system time of every Chromium process (browser, renderer, GPU, audio
  and network services), read from /proc, over a window with the microphone open and the
  meter running but not sending (idle), then over a window streaming; per second of audio.
- **Bytes**: what the page sent through the proxy (WebSocket frames, TCP payload) and
  what the receiver counts as audio packets (``micwire_received_bytes_total``: 24-byte
  headers and payloads), per second.
- **Latency**: the receiver's ``--stats-json`` figures: ``network_ms`` (the capture time
  the page stamps on each packet to its arrival) and ``latency_ms`` (to the sound card:
  plus the jitter buffer and the device's output latency). Both clocks are this machine's.

    .venv/bin/python bench/guest_sender.py [--seconds 20] [--only opus]

Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests" / "web")]
from browser import browser_page  # noqa: E402
from rig import jack_server, receiver  # noqa: E402

RATE = 48000
TICK = os.sysconf("SC_CLK_TCK")
CONFIGS = [
    ("opus 32 kbit/s, 20 ms (default)", "codec=opus&bitrate=32000"),
    ("pcm 16-bit, 20 ms", "codec=pcm"),
    (
        "opus 64 kbit/s, 10 ms, lowdelay",
        "codec=opus&bitrate=64000&frame_ms=10&application=lowdelay",
    ),
]


def mic_file(path: Path) -> None:
    n = 12 * RATE
    t = np.arange(n) / RATE
    k = np.log(3000 / 200) / 12
    sweep = np.sin(2 * np.pi * 200 * (np.exp(k * t) - 1) / k)
    noise = np.random.default_rng(7).standard_normal(n) * 0.05
    sf.write(str(path), np.rint((0.3 * sweep + noise) * 32767).astype(np.int16), RATE)


# --- Chromium's processes ------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def kind(pid: int) -> str | None:
    """browser, renderer, gpu, audio, network, utility; None for what is not Chromium."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in cmdline]
    if not args or "chrom" not in Path(args[0]).name:
        return None
    joined = " ".join(args)
    match = re.search(r"--type=(\S+)", joined)
    if match is None:
        return "browser"
    if match.group(1) == "gpu-process":
        return "gpu"
    if match.group(1) == "utility":
        if "AudioService" in joined:
            return "audio"
        if "NetworkService" in joined:
            return "network"
        return "utility"
    return match.group(1)


def chromium_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's Chromium descendants, by process kind."""
    totals: dict[str, float] = {}
    for pid in descendants(os.getpid()):
        what = kind(pid)
        fields = _stat(pid) if what else None
        if what and fields:
            totals[what] = totals.get(what, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return totals


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


# --- a proxy that counts what the page sends ----------------------------------------------
class CountingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = 0  # bytes from the browser to the receiver
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer, True), self._pipe(up_reader, writer))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    self.sent += len(data)
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        writer.close()

    def close(self) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)


def received_bytes(port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(r"^micwire_received_bytes_total (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


def stats_lines(path: Path, since: float, until: float) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if since <= item["time"] <= until and item["state"] == "live":
            lines.append(item)
    return lines


def run(work: Path, jack: str, query: str, seconds: float) -> dict[str, Any]:
    stats = work / "stats.jsonl"
    stats.unlink(missing_ok=True)
    env = {"JACK_DEFAULT_SERVER": jack}
    rx, port = receiver("--output-device", "system", "--stats-json", str(stats), env=env)
    proxy = CountingProxy(port)
    try:
        with browser_page(f"http://127.0.0.1:{proxy.port}", fake_mic_wav=work / "mic.wav") as page:
            page.goto(f"/send?name=bench&{query}")
            page.wait_for_function("() => window.micwireSend !== undefined")
            page.evaluate("() => window.micwireSend.ready()")
            time.sleep(2)  # settled: microphone open, meter running
            before = chromium_cpu()
            time.sleep(seconds / 2)
            idle = diff(chromium_cpu(), before)
            idle_s = seconds / 2
            page.evaluate("() => window.micwireSend.start()")
            page.wait_for_function("() => window.micwireSend.state === 'live'")
            time.sleep(3)  # the receiver's jitter buffer has settled
            before, sent0, rx0 = chromium_cpu(), proxy.sent, received_bytes(port)
            page0 = page.evaluate("() => window.micwireSend.stats()")
            t0 = time.time()
            time.sleep(seconds)
            busy = diff(chromium_cpu(), before)
            t1 = time.time()
            sent1, rx1 = proxy.sent, received_bytes(port)
            page1 = page.evaluate("() => window.micwireSend.stats()")
            page.evaluate("() => window.micwireSend.stop()")
            page.wait_for_function(
                "() => ['delivered', 'undelivered', 'failed'].includes(window.micwireSend.state)",
                timeout=60_000,
            )
            final = page.evaluate("() => window.micwireSend.stats()")
    finally:
        proxy.close()
        rx.signal(signal.SIGINT)
        rx.wait()
    audio_s = (page1["capturedSamples"] - page0["capturedSamples"]) / RATE
    window = stats_lines(stats, t0, t1)
    network = [x["network_ms"] for x in window if x.get("network_ms") is not None]
    latency = [x["latency_ms"] for x in window if x.get("latency_ms") is not None]
    return {
        "idle": {k: v / idle_s for k, v in idle.items()},
        "busy": {k: v / audio_s for k, v in busy.items()},
        "wire_Bps": (sent1 - sent0) / (t1 - t0),
        "packets_Bps": (rx1 - rx0) / (t1 - t0),
        "page_Bps": (page1["bytesSent"] - page0["bytesSent"]) / audio_s,
        "network_ms": network,
        "latency_ms": latency,
        "underruns": window[-1].get("underruns") if window else None,
        "final": final["status"],
    }


def pct(values: dict[str, float]) -> str:
    order = ["renderer", "gpu", "audio", "network", "utility", "browser"]
    parts = [f"{k} {values[k] * 100:.1f}" for k in order if values.get(k, 0) >= 0.0005]
    return f"{sum(values.values()) * 100:5.1f} % ({', '.join(parts)})"


def q(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def report(name: str, query: str, r: dict[str, Any]) -> None:
    wire, packets, page = r["wire_Bps"], r["packets_Bps"], r["page_Bps"]
    net, lat = r["network_ms"], r["latency_ms"]
    print(f"\n{name}  (/send?{query})")
    print(f"  Chromium CPU, mic open, not sending: {pct(r['idle'])} of a core")
    print(f"  Chromium CPU, streaming:             {pct(r['busy'])} of a core per s of audio")
    print(f"  bytes/s on the wire {wire:7.0f} ({wire * 8 / 1000:5.1f} kbit/s)", end="")
    print(f"   audio packets {packets:7.0f}   the page's own count {page:7.0f}")
    print(f"  capture -> arrival:    p50 {q(net, 50):5.1f} ms  p95 {q(net, 95):5.1f} ms", end="")
    print(f"   ({len(net)} one-second figures)")
    print(f"  capture -> sound card: p50 {q(lat, 50):5.1f} ms  p95 {q(lat, 95):5.1f} ms", end="")
    print(f"   receiver underruns {r['underruns']}")
    print(f"  at the end the page said: {r['final']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, jack_server(Path(tmp)) as jack:
        work = Path(tmp)
        mic_file(work / "mic.wav")
        print(f"browser sender -> receiver (JACK dummy sound card), {args.seconds:g} s windows")
        for name, query in CONFIGS:
            if args.only in name:
                report(name, query, run(work, jack, query, args.seconds))


if __name__ == "__main__":
    main()
