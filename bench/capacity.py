"""What a stream costs the receiver, next to GStreamer doing the same job on the same packets.

For each job (Opus->MP3, Opus->WAV, PCM->WAV) and each stream count, the same paced load
(bench/loadgen.py, written from docs/PROTOCOL.md: one packet per 20 ms per stream, a tone,
encoded once) goes, in turn, to

- ``micwire receive --no-play --no-live --record DIR --format mp3|wav`` over WebSockets, and
- one ``gst-launch-1.0`` process with one branch per stream, fed the same payloads as
  RTP/UDP: ``udpsrc ! rtpjitterbuffer ! rtpopusdepay ! opusdec ! audioconvert !
  lamemp3enc cbr 64 kbit/s ! filesink`` (``wavenc`` for WAV, ``rtpL16depay`` for PCM).

The load generator is a separate process; only the server's CPU time is counted (utime +
stime from /proc, over a window that starts once every stream is flowing). After the load
ends the server is stopped (SIGINT: micwire finishes its files; gst-launch -e sends EOS)
and every file is opened with soundfile: the seconds recorded are printed beside the
seconds sent, so a server that keeps up by dropping audio shows it.

    .venv/bin/python bench/capacity.py [--streams 1,10,40] [--seconds 20]
        [--jobs opus-mp3,opus-wav,pcm-wav] [--only micwire|gstreamer]
        [--micwire-python [LABEL=]PATH ...]

Live jobs (``--jobs opus-wav-live,pcm-wav-live``, not run by default) play every stream
on a sound card while recording it to WAV: a JACK dummy server the bench starts for each
run (48 kHz, ``--period`` frames, 256 by default: 5.33 ms, a USB card at a low-latency
setting), the receiver on it with ``--output-device system`` instead of ``--no-play``
(and ``--stats-json``, to count its playback glitches), against one GStreamer process
doing the same: per stream ``udpsrc ! rtpjitterbuffer latency=50 ! depay ! [opusdec !]
tee``, one branch to ``wavenc ! filesink`` as above, the other ``audioconvert !
audioresample`` into one ``audiomixer`` (float stereo at the card's rate, as micwire's
mix) ``! jackaudiosink`` (its defaults: 200 ms buffer, 10 ms segments). A JACK client of
the bench records the card's input from the server's first output port, so each run says
at what level it was heard and how many JACK xruns fell in the measurement.

``--micwire-python PATH`` (repeatable; e.g. /work/wt-premix/.venv/bin/python) runs each
micwire job with that interpreter too (``python -m micwire``: its checkout's receiver),
in turns with this checkout's, labelled with the checkout's folder.

GStreamer comes from the Debian packages gstreamer1.0-tools, -plugins-base and
-plugins-good (jackaudiosink too); without them the bench says so and measures micwire
alone. Prints figures; not a test. The machine's other load shows in the figures: run it
on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")
RATE = 48000
WARM_S = 3.0  # after the load starts: connections made, files open, queues steady
JOBS = {
    # job: (codec on the wire, file format)
    "opus-mp3": ("opus", "mp3"),
    "opus-wav": ("opus", "wav"),
    "pcm-wav": ("pcm", "wav"),
}
#: Jobs that also play every stream on a sound card (a JACK dummy server), one mix.
LIVE_JOBS = {"opus-wav-live": ("opus", "wav"), "pcm-wav-live": ("pcm", "wav")}
JOBS.update(LIVE_JOBS)
DEFAULT_JOBS = ("opus-mp3", "opus-wav", "pcm-wav")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    """The living child processes of ``pid`` (the workers of ``--workers N``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(_stat(int(entry))[1])
            except OSError:
                continue
            if parent == pid:
                found.append(int(entry))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its reaped children and its living ones (the
    workers of ``--workers N``), in seconds."""
    total = sum(int(_stat(pid)[i]) for i in (11, 12, 13, 14)) / TICK
    return total + sum(cpu_seconds(child) for child in children(pid))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


MICWIRE = str(Path(sys.executable).with_name("micwire"))


def receive_command(
    port: int, directory: Path, *options: str, python: str | None = None, play: bool = False
) -> list[str]:
    """``micwire receive`` on 127.0.0.1:port recording to ``directory``, no playback
    unless ``play`` (then on the card ``system``); ``python``: another checkout's
    interpreter (``python -m micwire``) instead of this one's ``micwire``."""
    micwire = [MICWIRE] if python is None else [python, "-m", "micwire"]
    playback = ("--output-device", "system") if play else ("--no-play",)
    return [
        *(*micwire, "receive", *playback, "--no-live", "--host", "127.0.0.1"),
        *("--port", str(port), "--record", str(directory), *options),
    ]


@dataclass
class Checkout:
    """Another checkout's micwire: its interpreter, and a label for the figures."""

    python: str
    label: str

    @classmethod
    def of(cls, spec: str) -> Checkout:
        label, _, path = spec.rpartition("=")
        python = Path(path)
        if not label:
            # .../CHECKOUT/.venv/bin/python: named after CHECKOUT (never resolve the
            # symbolic link: it leads to the system's interpreter)
            folder = python.parent.parent.parent
            named = python.parent.parent.name.startswith(".")
            label = "micwire@" + (folder.name if named else path)
        return cls(str(python.absolute()), label)


@dataclass
class Played:
    """What a live run played, during the measurement."""

    level_dbfs: float  # RMS of the card's first output port of the server, as recorded
    xruns: int  # JACK xruns (a stall of the machine)
    glitches: dict[str, float] = field(default_factory=dict)  # micwire's own counters

    def describe(self) -> str:
        said = f"heard at {self.level_dbfs:.1f} dBFS, {self.xruns} xruns"
        g = self.glitches
        if g:
            said += (
                f"; {g['underruns']:.0f} underruns, {g['concealed_samples']:.0f} samples "
                f"concealed, {g['skipped_samples']:.0f} skipped, {g['device_underflows']:.0f} "
                f"device underflows, {g['callback_errors']:.0f} callback errors"
            )
            if "limiter_hits" in g:
                said += f", limiter hits {g['limiter_hits']:.0f}"
            said += f"; drift {g['drift_min_ppm']:+.0f}..{g['drift_max_ppm']:+.0f} ppm"
        return said


@dataclass
class Result:
    server: str  # "micwire" or "micwire*N" (N workers) or "micwire@CHECKOUT" or "gstreamer"
    job: str
    streams: int
    cpu_percent: float  # of one core, whole server
    sent_s: float
    recorded_s: float
    files: int
    played: Played | None = None
    note: str = ""  # why a run has no figures (the server died: its last words)

    @property
    def per_stream(self) -> float:
        return self.cpu_percent / self.streams


def recorded_seconds(directory: Path, extension: str) -> tuple[float, int]:
    files = sorted(directory.rglob(f"*.{extension}"))
    frames = 0
    for path in files:
        try:
            frames += soundfile.info(str(path)).frames
        except RuntimeError as exc:
            print(f"    {path.name}: unreadable ({exc})", file=sys.stderr)
    return frames / RATE, len(files)


def gst_pipeline(
    job: str, streams: int, base_port: int, directory: Path, card: str | None = None
) -> list[str]:
    """One gst-launch process doing ``job`` for every stream; with ``card`` (a JACK
    server's name) each stream is also mixed into one jackaudiosink there."""
    codec, fmt = JOBS[job]
    words: list[str] = []
    for k in range(streams):
        port = base_port + 2 * k
        if codec == "opus":
            caps = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=96"
            decode = ["rtpopusdepay", "!", "opusdec"]
        else:
            caps = (
                "application/x-rtp,media=audio,encoding-name=L16,clock-rate=48000,"
                "channels=1,payload=97"
            )
            decode = ["rtpL16depay"]
        # the same file as micwire's: mono, 48 kHz, 16-bit (opusdec alone would give stereo
        # and LAME, left to choose, 24 kHz at 64 kbit/s)
        raw = ["audio/x-raw,format=S16LE,rate=48000,channels=1"]
        if fmt == "mp3":
            encoder = [
                *("lamemp3enc", "target=bitrate", "cbr=true", "bitrate=64", "!"),
                "audio/mpeg,rate=48000,channels=1",
            ]
        else:
            encoder = ["wavenc"]
        words += [
            "udpsrc",
            f"port={port}",
            "buffer-size=1048576",
            f"caps={caps}",
            "!",
            "rtpjitterbuffer",
            "latency=50",
            "!",
            *decode,
            "!",
            "audioconvert",
            "!",
            *raw,
            "!",
        ]
        record = [*encoder, "!", "filesink", f"location={directory / f'gst-{k}.{fmt}'}"]
        if card is None:
            words += record
        else:
            # a tee of the decoded mono stream: the file, and the mix (a tee straight after
            # opusdec, which decodes to stereo, recorded and played nothing at all)
            words += ["tee", f"name=t{k}", f"t{k}.", "!", "queue", "!", *record]
            words += [f"t{k}.", "!", "queue", "!", "audioconvert", "!", "audioresample", "!"]
            words += ["mix."]
    if card is not None:
        # float stereo at the card's rate, as micwire's mix
        words += ["audiomixer", "name=mix", "!", "audio/x-raw,format=F32LE,channels=2", "!"]
        words += ["jackaudiosink", f"server={card}", "client-name=gst", "connect=auto"]
    return ["gst-launch-1.0", "-q", "-e", *words]


def run_load(url: str, streams: int, seconds: float, codec: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            url,
            "--streams",
            str(streams),
            "--seconds",
            str(seconds),
            "--codec",
            codec,
            "--name",
            "cap",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


class Card:
    """A JACK dummy server for a live run, and a client of the bench's that records what
    the server under test plays (its first output port) and counts the xruns."""

    def __init__(self, name: str) -> None:
        from rig import Probe

        self.name = name
        self.probe = Probe(name)
        self.connected = False

    def listen(self) -> None:
        """Record the server's first output port, once it has one (not yet: try again)."""
        if self.connected:
            return
        ports = sorted(self.probe.ports(is_input=False))
        if ports:
            self.probe.client.connect(ports[0], self.probe.inp)
            self.connected = True

    @property
    def frames(self) -> int:
        return int(self.probe._frames_recorded)

    def level_dbfs(self, start: int, end: int) -> float:
        """RMS level (dBFS) of what was recorded between two frame counts."""
        heard = self.probe.recording()[start:end]
        rms = float(np.sqrt(np.mean(np.square(heard, dtype=np.float64)))) if len(heard) else 0.0
        return 20 * float(np.log10(max(rms, 1e-10)))

    def close(self) -> None:
        self.probe.close()


@contextmanager
def card_for(job: str, workdir: Path, period: int) -> Iterator[Card | None]:
    """A card for a live job (None for the others)."""
    if job not in LIVE_JOBS:
        yield None
        return
    sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
    from rig import jack_server

    where = Path(tempfile.mkdtemp(prefix="card-", dir=workdir))
    with jack_server(where, period=period) as name:
        card = Card(name)
        try:
            yield card
        finally:
            card.close()


@dataclass
class Window:
    """The steady part of a run: CPU %, and when it was (wall clock, card frames)."""

    cpu_percent: float
    start: float
    end: float
    start_frame: int = 0
    end_frame: int = 0


def measure(
    server: subprocess.Popen[bytes],
    load: subprocess.Popen[str],
    seconds: float,
    card: Card | None = None,
) -> Window:
    """% of one core the server used over the steady part of the load."""
    warm_until = time.monotonic() + WARM_S
    while card is not None and not card.connected and time.monotonic() < warm_until:
        card.listen()
        time.sleep(0.05)
    time.sleep(max(0.0, warm_until - time.monotonic()))
    frame0 = card.frames if card is not None else 0
    c0, t0, w0 = cpu_seconds(server.pid), time.monotonic(), time.time()
    time.sleep(max(1.0, seconds - WARM_S - 1.5))
    c1, t1, w1 = cpu_seconds(server.pid), time.monotonic(), time.time()
    frame1 = card.frames if card is not None else 0
    if server.poll() is not None:
        raise RuntimeError(f"server exited early ({server.returncode})")
    return Window(100.0 * (c1 - c0) / (t1 - t0), w0, w1, frame0, frame1)


def stop(server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def played(card: Card | None, window: Window, stats: Path | None = None) -> Played | None:
    """What the card heard during ``window``, and micwire's own playback counters then
    (from its ``--stats-json``: each stream's change over the window, summed)."""
    if card is None:
        return None
    result = Played(
        card.level_dbfs(window.start_frame, window.end_frame),
        card.probe.xruns.between(window.start, window.end),
    )
    if stats is None or not stats.exists():
        return result
    before: dict[str, dict[str, Any]] = {}
    after: dict[str, dict[str, Any]] = {}
    for line in stats.read_text().splitlines():
        figures = json.loads(line)
        if "underruns" not in figures:  # not playing (yet)
            continue
        if figures["time"] <= window.start:
            before[figures["stream"]] = figures
        if figures["time"] <= window.end:
            after[figures["stream"]] = figures
    counters = ("underruns", "concealed_samples", "skipped_samples", "device_underflows")
    glitches = {
        key: float(sum(f[key] - before.get(name, {}).get(key, 0) for name, f in after.items()))
        for key in (*counters, "callback_errors")
    }
    if any("limiter_hits" in f for f in after.values()):  # one mix: the device's count
        glitches["limiter_hits"] = float(
            max(
                f["limiter_hits"] - before.get(n, {}).get("limiter_hits", 0)
                for n, f in after.items()
            )
        )
    drifts = [f["drift_ppm"] for f in after.values()] or [0.0]
    glitches["drift_min_ppm"], glitches["drift_max_ppm"] = min(drifts), max(drifts)
    result.glitches = glitches
    return result


def run_micwire(
    job: str,
    streams: int,
    seconds: float,
    workdir: Path,
    workers: int = 1,
    checkout: Checkout | None = None,
    period: int = 256,
) -> Result:
    codec, fmt = JOBS[job]
    label = checkout.label if checkout else "micwire" if workers == 1 else f"micwire*{workers}"
    directory = workdir / f"{label}-{job}-{streams}-{workers}"
    port = free_port()
    log = workdir / f"{label}-{job}-{streams}-{workers}.log"
    with card_for(job, workdir, period) as card, open(log, "wb") as said:
        stats = workdir / f"stats-{label}-{job}-{streams}.jsonl" if card else None
        server = subprocess.Popen(
            receive_command(
                port,
                directory,
                *("--format", fmt, "--max-streams", str(max(64, streams + 8))),
                *("--workers", str(workers)),
                *(("--stats-json", str(stats)) if stats else ()),
                python=checkout.python if checkout else None,
                play=card is not None,
            ),
            stderr=said,
            env={**os.environ, **({"JACK_DEFAULT_SERVER": card.name} if card else {})},
        )
        load: subprocess.Popen[str] | None = None
        try:
            wait_port(port)
            load = run_load(f"ws://127.0.0.1:{port}", streams, seconds, codec)
            window = measure(server, load, seconds, card)
            out, _ = load.communicate(timeout=seconds + 60)
            stats_sent = json.loads(out)
        except RuntimeError as exc:  # the receiver died: a result too, with its last words
            last = log.read_text(errors="replace").strip().splitlines()[-3:]
            return Result(label, job, streams, float("nan"), 0.0, 0.0, 0, None, f"{exc}: {last}")
        finally:  # a failure half-way leaves nothing running
            if load is not None and load.poll() is None:
                load.kill()
                load.wait()
            stop(server)
        heard = played(card, window, stats)
    recorded, files = recorded_seconds(directory, fmt)
    sent = streams * stats_sent["samples_each"] / RATE
    return Result(label, job, streams, window.cpu_percent, sent, recorded, files, heard)


def run_gstreamer(
    job: str, streams: int, seconds: float, workdir: Path, period: int = 256
) -> Result:
    codec, fmt = JOBS[job]
    directory = workdir / f"gst-{job}-{streams}"
    directory.mkdir(parents=True)
    base_port = 20000 + (os.getpid() % 200) * 100
    with card_for(job, workdir, period) as card:
        server = subprocess.Popen(
            gst_pipeline(job, streams, base_port, directory, card.name if card else None),
            stderr=subprocess.DEVNULL,
        )
        load: subprocess.Popen[str] | None = None
        try:
            time.sleep(1.0 + streams * 0.02)  # elements linked, sockets bound
            load = run_load(f"rtp://127.0.0.1:{base_port}", streams, seconds, codec)
            window = measure(server, load, seconds, card)
            out, _ = load.communicate(timeout=seconds + 60)
            stats = json.loads(out)
            time.sleep(0.3)  # the jitter buffers' 50 ms
        finally:  # a failure half-way leaves nothing running
            if load is not None and load.poll() is None:
                load.kill()
                load.wait()
            stop(server)
        heard = played(card, window)
    recorded, files = recorded_seconds(directory, fmt)
    sent = streams * stats["samples_each"] / RATE
    return Result("gstreamer", job, streams, window.cpu_percent, sent, recorded, files, heard)


# The floor for a Python sender: a bare `websockets` client that sends a prepared 20 ms PCM
# packet every 20 ms, nothing else (no capture, no encoding, no spool).
BARE_SENDER = """
import asyncio, json, struct, sys, time, uuid
from websockets.asyncio.client import connect
async def main():
    async with connect(sys.argv[1], compression=None) as ws:
        now = int(time.time() * 1e6)
        await ws.send(json.dumps({"type": "hello", "protocol": 2, "codec": "pcm",
            "stream": "bare-" + uuid.uuid4().hex[:8], "rate_hz": 48000, "channels": 1,
            "frame_ms": 20, "start_time_us": now, "sent_time_us": now,
            "stream_id": uuid.uuid4().hex}))
        await ws.recv()
        async def drain():
            async for _ in ws:
                pass
        reader = asyncio.ensure_future(drain())
        payload, t0 = bytes(1920), time.monotonic()
        for i in range(int(float(sys.argv[2]) * 50)):
            delay = t0 + (i + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            header = struct.pack("!BBHIQQ", 1, 0, 960, i, i * 960, int(time.time() * 1e6))
            await ws.send(header + payload)
        reader.cancel()
asyncio.run(main())
"""


# The floor for a Python sender from a sound card: a PortAudio input stream whose callback
# copies each block and does nothing else (no event loop, no network).
BARE_CALLBACK = """
import sys, time
import sounddevice as sd
held = []
def callback(indata, frames, time_info, status):
    held.append(bytes(indata))
    del held[:-8]
with sd.RawInputStream(device="system", samplerate=48000, channels=1, dtype="int16",
                       latency="low", callback=callback):
    time.sleep(float(sys.argv[1]))
"""


def sender_cpu(
    runs: dict[str, list[str]], seconds: float, env: dict[str, str]
) -> list[tuple[str, float]]:
    """% of a core of each command in turn, over the steady part of ``seconds``. micwire
    and Python commands get ``seconds`` as their last argument and end by themselves;
    others are stopped."""
    micwire = str(Path(sys.executable).with_name("micwire"))
    out = []
    for label, command in runs.items():
        if command[0] == micwire:
            command = [*command, "--name", label.replace(" ", "-"), "--duration"]
        timed = command[0] == micwire or command[0] == sys.executable
        sender = subprocess.Popen(
            [*command, str(seconds)] if timed else command,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
        time.sleep(WARM_S)
        c0, t0 = cpu_seconds(sender.pid), time.monotonic()
        time.sleep(max(1.0, seconds - WARM_S - 1.5))
        c1, t1 = cpu_seconds(sender.pid), time.monotonic()
        if timed:
            sender.wait(30)
        else:
            stop(sender)
        out.append((label, 100.0 * (c1 - c0) / (t1 - t0)))
    return out


def sender_costs(seconds: float) -> list[tuple[str, float]]:
    """% of a core of one sender process (a tone, then a sound card if JACK is here)."""
    port = free_port()
    micwire = str(Path(sys.executable).with_name("micwire"))
    receiver = subprocess.Popen(
        [micwire, "receive", "--no-play", "--no-live", "--host", "127.0.0.1", "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    url = f"ws://127.0.0.1:{port}"
    tone = [micwire, "send", url, "--source", "tone:440"]
    runs = {
        "micwire send tone, PCM": [*tone, "--codec", "pcm"],
        "micwire send tone, Opus": [*tone, "--codec", "opus"],
        "micwire send tone, Opus 60 ms": [*tone, "--codec", "opus", "--frame-ms", "60"],
        "micwire send tone, PCM 60 ms": [*tone, "--codec", "pcm", "--frame-ms", "60"],
        "bare websockets client, PCM": [sys.executable, "-c", BARE_SENDER, url],
    }
    # what a user would run instead: GStreamer making the same tone, 20 ms packets, to RTP
    # (nobody receives them: a UDP send costs the sender the same either way)
    live_tone = ["audiotestsrc", "is-live=true", "samplesperbuffer=960", "!"]
    if have_gstreamer() is None:
        runs["GStreamer tone, Opus RTP"] = [
            *("gst-launch-1.0", "-q", *live_tone, "audio/x-raw,rate=48000,channels=1", "!"),
            *("opusenc", "bitrate=32000", "frame-size=20", "!", "rtpopuspay", "!"),
            *("udpsink", "host=127.0.0.1", f"port={free_port()}"),
        ]
        runs["GStreamer tone, L16 RTP"] = [
            *("gst-launch-1.0", "-q", *live_tone),
            *("audio/x-raw,rate=48000,channels=1,format=S16BE", "!", "rtpL16pay", "!"),
            *("udpsink", "host=127.0.0.1", f"port={free_port()}"),
        ]
    try:
        wait_port(port)
        out = sender_cpu(runs, seconds, {})
        out += device_sender_costs(url, seconds)
    finally:
        stop(receiver)
    return out


def device_sender_costs(url: str, seconds: float) -> list[tuple[str, float]]:
    """The same from a sound card: a JACK server with the dummy driver, 48 kHz, 256-frame
    periods (5.33 ms, like a USB card at a low-latency setting), as in bench/latency.py."""
    if shutil.which("jackd") is None:
        print("jackd is missing (Debian: jackd2): no sound-card sender figures", file=sys.stderr)
        return []
    sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
    from rig import jack_server

    micwire = str(Path(sys.executable).with_name("micwire"))
    card = [micwire, "send", url, "--device", "system"]
    runs = {
        "micwire send card, PCM block by block": [*card, "--codec", "pcm"],
        "micwire send card, PCM --gather": [*card, "--codec", "pcm", "--gather"],
        "micwire send card, Opus": [*card, "--codec", "opus"],
        "Python PortAudio callback, copy only": [sys.executable, "-c", BARE_CALLBACK],
    }
    jack_src = ["gst-launch-1.0", "-q", "jackaudiosrc", "connect=auto"]
    have_jack_src = (
        shutil.which("gst-inspect-1.0") is not None
        and subprocess.run(["gst-inspect-1.0", "jackaudiosrc"], capture_output=True).returncode == 0
    )
    if not have_jack_src:
        print(
            "GStreamer's jackaudiosrc is missing (Debian: gstreamer1.0-plugins-good): "
            "no GStreamer sound-card sender figures",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory() as tmp, jack_server(Path(tmp), period=256) as name:
        if have_jack_src:
            # GStreamer's own sound-card sender: a buffer per period, as micwire's PCM
            jack_src += [f"server={name}", "latency-time=5333", "!", "audio/x-raw,channels=1"]
            runs["GStreamer card, Opus RTP"] = [
                *(*jack_src, "!", "audioconvert", "!"),
                *("opusenc", "bitrate=32000", "frame-size=20", "!", "rtpopuspay", "!"),
                *("udpsink", "host=127.0.0.1", f"port={free_port()}"),
            ]
            runs["GStreamer card, L16 RTP"] = [
                *(*jack_src, "!", "audioconvert", "!", "audio/x-raw,format=S16BE", "!"),
                *("rtpL16pay", "!", "udpsink", "host=127.0.0.1", f"port={free_port()}"),
            ]
        env = {"JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
        return sender_cpu(runs, seconds, env)


def have_gstreamer(live: bool = False) -> str | None:
    """None when every element is there, else what is missing (``live``: jackaudiosink
    and the mixer too)."""
    if shutil.which("gst-launch-1.0") is None:
        return "gst-launch-1.0 (Debian: gstreamer1.0-tools)"
    elements = ["udpsrc", "rtpjitterbuffer", "rtpopusdepay", "opusdec", "lamemp3enc"]
    if live:
        elements += ["audiomixer", "audioresample", "jackaudiosink"]
    for element in elements:
        probe = subprocess.run(["gst-inspect-1.0", element], capture_output=True)
        if probe.returncode != 0:
            return f"GStreamer element {element} (gstreamer1.0-plugins-base/-good)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,10,40", help="comma list of stream counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="load length per run")
    parser.add_argument(
        "--jobs",
        default=",".join(DEFAULT_JOBS),
        help=f"comma list of {', '.join(JOBS)} (default: {','.join(DEFAULT_JOBS)})",
    )
    parser.add_argument("--only", choices=("micwire", "gstreamer"))
    parser.add_argument("--keep", action="store_true", help="keep the recordings")
    parser.add_argument(
        "--workers",
        default="1",
        help="comma list of micwire's --workers to measure (e.g. 1,2: the scaling figure)",
    )
    parser.add_argument(
        "--micwire-python",
        action="append",
        default=[],
        metavar="[LABEL=]PATH",
        help="also run each micwire job with this interpreter (another checkout's "
        ".venv/bin/python), in turns with this checkout's; repeatable",
    )
    parser.add_argument(
        "--period", type=int, default=256, help="the live jobs' card: frames per period"
    )
    parser.add_argument(
        "--senders", action="store_true", help="only the sender figures (one stream each)"
    )
    args = parser.parse_args()
    if args.senders:
        print("# one sender, 20 ms frames, 48 kHz mono, into a receiver on this machine")
        print("# ('card': a JACK dummy sound card, 256-frame periods)")
        for label, percent in sender_costs(args.seconds):
            print(f"  {label:40} {percent:5.2f} % of a core")
        return
    counts = [int(n) for n in args.streams.split(",")]
    worker_counts = [int(n) for n in args.workers.split(",")]
    jobs = args.jobs.split(",")
    unknown = [job for job in jobs if job not in JOBS]
    if unknown:
        parser.error(f"unknown job {unknown[0]!r}: one of {', '.join(JOBS)}")
    checkouts = [Checkout.of(spec) for spec in args.micwire_python]
    servers = ["micwire", "gstreamer"] if args.only is None else [args.only]
    live = any(job in LIVE_JOBS for job in jobs)
    missing = have_gstreamer(live) if "gstreamer" in servers else None
    if missing:
        print(f"GStreamer is missing: {missing}; measuring micwire alone", file=sys.stderr)
        servers = [s for s in servers if s != "gstreamer"]
    print(
        f"# {datetime.datetime.now().isoformat(timespec='minutes')}, {os.cpu_count()} cores, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.seconds:g} s "
        "of load per run, 20 ms frames, mono 48 kHz"
        + (f"; live jobs on a JACK dummy card, 48 kHz, {args.period}-frame periods" if live else "")
    )
    print(
        f"# {'server':20} {'job':13} {'streams':>7} {'%core':>7} {'%/stream':>9} "
        f"{'streams/core':>12} {'sent s':>8} {'recorded s':>10}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="micwire-capacity-"))
    results: list[Result] = []
    try:
        for job in jobs:
            for n in counts:
                runs: list[tuple[str, int, Checkout | None]] = []
                if "micwire" in servers:
                    runs += [("micwire", w, None) for w in worker_counts]
                    runs += [("micwire", 1, checkout) for checkout in checkouts]
                runs += [("gstreamer", 1, None)] if "gstreamer" in servers else []
                for server, w, checkout in runs:
                    if server == "micwire":
                        r = run_micwire(job, n, args.seconds, workdir, w, checkout, args.period)
                    else:
                        r = run_gstreamer(job, n, args.seconds, workdir, args.period)
                    results.append(r)
                    per_core = 100.0 / r.per_stream if r.per_stream > 0 else float("inf")
                    print(
                        f"  {r.server:20} {r.job:13} {r.streams:7d} {r.cpu_percent:7.1f} "
                        f"{r.per_stream:9.2f} {per_core:12.0f} {r.sent_s:8.1f} "
                        f"{r.recorded_s:10.1f}",
                        flush=True,
                    )
                    if r.played is not None or r.note:
                        said = r.played.describe() if r.played else r.note
                        print(f"  {'':20} {said}", flush=True)
    finally:
        if args.keep:
            print(f"# recordings kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if len(worker_counts) > 1:
        # a worker is one event loop: it uses about one core (its file writers a little
        # more), so one machine records about workers x 100 / (% per stream) streams
        cores = os.cpu_count() or 1
        print(f"# streams one machine records, from % per stream (workers <= {cores} cores):")
        for r in results:
            if r.server.startswith("micwire") and "@" not in r.server and r.per_stream > 0:
                workers = int(r.server.partition("*")[2] or 1)
                print(
                    f"  {r.job:9} measured at {r.streams:3d} streams, {workers} worker(s): "
                    f"{100.0 * min(workers, cores) / r.per_stream:5.0f} streams; "
                    f"with {cores} workers: {100.0 * cores / r.per_stream:5.0f}"
                )
    if "gstreamer" in servers and "micwire" in servers:
        print("# micwire / GStreamer, CPU per stream (below 1 is cheaper):")
        for job in jobs:
            for n in counts:
                cell = {r.server: r for r in results if r.job == job and r.streams == n}
                gst = cell.get("gstreamer")
                if gst is None or gst.per_stream <= 0:
                    continue
                for name in ["micwire", *(c.label for c in checkouts)]:
                    if name in cell:
                        ratio = cell[name].per_stream / gst.per_stream
                        print(f"  {job:13} {n:4d} streams, {name:20}: {ratio:5.2f}")


if __name__ == "__main__":
    main()
