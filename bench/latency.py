"""Mouth-to-ear latency of micwire on JACK clocks, the way a listener hears it, beside
JackTrip in the same run, and A/B against another checkout of micwire.

A JACK server with the dummy driver (256-frame periods: 5.33 ms at 48 kHz, 5.80 ms at
44.1 kHz, like a sound card) runs a receiver and a sender as separate processes, on real
PortAudio streams. A probe client plays a short chirp every 0.5 s into the sender's
capture port and records the receiver's playback port in the same process callback, so
both ends share one clock and each burst's delay is exact to a sample (found by
cross-correlation).

    .venv/bin/python bench/latency.py [--seconds 20] [--rate 48000|44100] [--only TEXT]
        [--micwire-python [LABEL=]PATH ...] [--rounds N] [--two-cards] [--no-jacktrip]
        [--json results.json]

``--rate`` is the rate of the receiver's card (and JackTrip's, and the probe's). Senders
send 48 kHz. At another rate the receiver converts (since the mix per device, issue 24;
before it, a 48 kHz stream did not play on a 44.1 kHz card at all, and the bench says
so). The sender then has a 48 kHz card of its own, as a remote guest has (PortAudio's
JACK host API opens only the server's rate: a sender on the 44.1 kHz card would send
44.1 kHz, or convert itself with ``--rate 48000``): a second JACK dummy server at 48 kHz,
both paced by the system clock. The probe is then two
clients, a player on the sender's card (a subprocess: one process holds clients of one
JACK server only) and a recorder on the receiver's card, and a burst's delay is the time
from the JACK cycle that played it to the one that recorded it (``jack_frames_to_time``:
CLOCK_MONOTONIC_RAW for every server), to a sample plus the servers' cycle-time
estimates (checked once with JackTrip from one 48 kHz card to the other, which moves
whole periods: every delay was one period plus the phase between the cards' cycles,
within 0.03 ms). Two cards' cycles meet at a phase of their own, which moves the delay
by up to a period: fixed for a run at equal rates, sweeping through every phase at 48
against 44.1 kHz. ``--two-cards`` puts the sender on a card of its own at 48 kHz too,
to see what the second card alone does.

``--micwire-python PATH`` (repeatable; e.g. /work/wt-premix/.venv/bin/python) runs every
micwire configuration with that interpreter too (its checkout's sender and receiver),
in turns with this checkout's, labelled with the checkout's folder and commit.

JackTrip (https://jacktrip.github.io/; Debian: ``apt-get install jacktrip``, 1.7 here) is
measured in the same run on the receiver's card: a hub server (``-S -p 5``, no
auto-patching) and a hub client (``-C 127.0.0.1``) on the same JACK server, both ``-q 2
-n 1``; the probe plays into the client's ``send_1`` and records the hub's
``receive_1`` for the client. Glitches are the hub's own receive-buffer underruns and
overflows (``-I 1``). Without ``jacktrip`` on the PATH the bench says so and goes on.

Prints p50/p95/max latency, bursts heard, JACK xruns during the measurement (a stall of
the machine shows there) and each tool's glitch counters for each configuration. Not a
test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import datetime
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from rig import Micwire, Probe, jack_server, seconds

SEND_RATE = 48000  # what every sender sends
PERIOD = 256
GLITCHES = ("underruns", "concealed_samples", "skipped_samples", "late_packets")


@dataclass
class Config:
    name: str
    send: tuple[str, ...]
    receive: tuple[str, ...] = ()


CONFIGS = [
    # the low-latency flags (issue 24): PCM, each capture block sent at once (a 5.33 ms
    # period leaves as a 5 ms packet and a 0.33 ms one), a 5 ms buffer floor
    Config(
        "pcm 5 ms frames, 5 ms buffer",
        ("--codec", "pcm", "--frame-ms", "5"),
        ("--latency-ms", "5"),
    ),
    # PCM leaves with each capture block (one packet per period)
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
JACKTRIP = "jacktrip -q 2"


@dataclass
class Result:
    config: str
    code: str  # which checkout ran it ("jacktrip" for JackTrip)
    round: int
    rate_hz: int
    bursts: int
    heard: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    glitches: dict[str, int]  # the receiver's counters during the measurement
    xruns: int  # JACK xruns on the cards during the measurement
    target_ms: float = 0.0
    drift_ppm: float = 0.0
    note: str = ""  # why nothing was heard


# --- time on a JACK card ------------------------------------------------------------------

_libjack: Any = None


def frames_to_time_us(client: Any, frames: int) -> int:
    """``jack_frames_to_time``: when the frame ``frames`` of ``client``'s server starts,
    in µs of the JACK servers' clock (CLOCK_MONOTONIC_RAW on Linux: the same for every
    server). JACK-Client does not wrap it; it is called through ctypes on the same
    libjack."""
    global _libjack
    import jack

    if _libjack is None:
        _libjack = ctypes.CDLL(ctypes.util.find_library("jack"))
        _libjack.jack_frames_to_time.restype = ctypes.c_uint64
        _libjack.jack_frames_to_time.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    pointer = int(jack._ffi.cast("uintptr_t", client._ptr))
    return int(_libjack.jack_frames_to_time(pointer, frames))


class TimedProbe(Probe):
    """rig's probe, and when each recorded JACK cycle began (µs) and when playback began."""

    def __init__(self, server: str) -> None:
        self.cycles: list[tuple[int, int]] = []  # (first recorded frame of the cycle, µs)
        self.played_at_us: int | None = None
        super().__init__(server)

    def _process(self, frames: int) -> None:
        first = self._frames_recorded
        before = self.played_at_frame
        super()._process(frames)
        at_us = frames_to_time_us(self.client, self.client.last_frame_time)
        self.cycles.append((first, at_us))
        if before is None and self.played_at_frame is not None:
            self.played_at_us = at_us

    def frame_at(self, at_us: float) -> float:
        """The recorded frame (fractional) that the card played at ``at_us``: from the
        start of the cycle it fell in, at the card's rate (NaN before the first)."""
        frames, times = np.array(self.cycles, dtype=np.float64).T
        if at_us < times[0]:
            return float("nan")
        i = int(np.searchsorted(times, at_us, side="right")) - 1
        return float(frames[i] + (at_us - times[i]) * self.client.samplerate / 1e6)


def player(server: str, train_path: str) -> None:
    """The probe's player on another card (``--play-on``): a process of its own, because a
    process holds clients of one JACK server only. Lines on stdin: ``connect PATTERN`` (to
    the first input port whose name matches, when it appears), ``play``; it answers with
    JSON lines."""
    probe = TimedProbe(server)
    try:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            command, _, pattern = line.strip().partition(" ")
            if command == "connect":
                port = wait_named_port(probe, pattern, is_input=True, timeout=20)
                probe.client.connect(probe.out, port)
                print(json.dumps({"connected": port}), flush=True)
            elif command == "play":
                train = np.load(train_path)
                probe.play(train)
                probe.wait_played(len(train) / probe.client.samplerate + 30)
                print(
                    json.dumps({"played_at_us": probe.played_at_us, "xruns": probe.xruns.times}),
                    flush=True,
                )
            elif command == "quit":
                break
    finally:
        probe.close()


class RemotePlayer:
    """:func:`player` in a subprocess, on the sender's card."""

    def __init__(self, server: str, train: np.ndarray, workdir: Path) -> None:
        path = workdir / f"train-{time.monotonic_ns()}.npy"
        np.save(path, train)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--play-on", server, "--train", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "JACK_NO_START_SERVER": "1"},
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.answer(30)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def answer(self, timeout: float) -> dict[str, Any]:
        try:
            return dict(json.loads(self._lines.get(timeout=seconds(timeout))))
        except queue.Empty:
            raise TimeoutError("the probe's player on the sender's card did not answer") from None

    def ask(self, command: str, timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer(timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_named_port(probe: Probe, pattern: str, *, is_input: bool, timeout: float) -> str:
    """The first port of another client whose name matches ``pattern``."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + seconds(timeout)
    while True:
        found = [p for p in probe.ports(is_input=is_input) if regex.search(p)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            kind = "input" if is_input else "output"
            raise TimeoutError(f"no {kind} port matching {pattern!r} appeared")
        time.sleep(0.05)


# --- the signal and what was heard -----------------------------------------------------


def chirp(rate: int) -> np.ndarray:
    """20 ms, 500 Hz -> 8 kHz, Hann window: the same sound at any rate."""
    n = int(0.02 * rate)
    t = np.arange(n) / rate
    return (0.5 * np.sin(2 * np.pi * (500 * t + (7500 / 0.04) * t * t)) * np.hanning(n)).astype(
        np.float32
    )


def train_of(rate: int, count: int) -> np.ndarray:
    burst, every = chirp(rate), rate // 2
    train = np.zeros(count * every, np.float32)
    for k in range(count):
        train[k * every : k * every + len(burst)] = burst
    return train


def latencies(recorded: np.ndarray, rate: int, starts: list[float]) -> list[float]:
    """Each burst's delay (ms) after ``starts`` (the recorded frame, fractional, where it
    would be with no delay), for the bursts heard (normalised correlation above 0.8)."""
    burst, every = chirp(rate), rate // 2
    found = []
    for at in starts:
        if not np.isfinite(at):
            continue
        first = int(np.floor(at))
        window = recorded[first : first + every]
        if len(window) < len(burst):
            break
        corr = np.correlate(window, burst, mode="valid")
        lag = int(np.argmax(corr))
        seg = window[lag : lag + len(burst)]
        peak = float(np.dot(seg, burst) / (np.linalg.norm(seg) * np.linalg.norm(burst) + 1e-12))
        if peak > 0.8:
            found.append((first + lag - at) / rate * 1000)
    return found


def summarise(
    config: str,
    code: str,
    round_: int,
    rate: int,
    count: int,
    found: list[float],
    glitches: dict[str, int],
    xruns: int,
    **extra: Any,
) -> Result:
    lat = np.array(found) if found else np.array([np.nan])
    return Result(
        config,
        code,
        round_,
        rate,
        count,
        len(found),
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 95)),
        float(np.max(lat)),
        glitches,
        xruns,
        **extra,
    )


# --- micwire --------------------------------------------------------------------------


@dataclass
class Checkout:
    """A micwire to run: an interpreter whose ``python -m micwire`` is that checkout's."""

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
            label = folder.name if python.parent.parent.name.startswith(".") else path
            commit = subprocess.run(
                ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if commit:
                label += f"@{commit}"
        return cls(str(python.absolute()), label)


class MicwireAt(Micwire):
    """rig's :class:`Micwire` run by another interpreter (another checkout's micwire)."""

    def __init__(self, python: str, *args: str, env: dict[str, str] | None = None) -> None:
        real = sys.executable
        sys.executable = python  # rig.Micwire builds its command from sys.executable
        try:
            super().__init__(*args, env=env)
        finally:
            sys.executable = real


def last_stats(path: Path) -> dict[str, Any]:
    """The newest line the receiver wrote for the stream (they come once a second)."""
    time.sleep(1.1)
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1]) if lines else {}


def why_silent(rx: Micwire) -> str:
    """The receiver's own words on why it plays nothing (its warnings), if it said any."""
    said = [line for line in rx.lines if re.search(r"play|device|output|cannot", line)]
    return said[-1] if said else "the receiver's output never appeared on the card"


def measure_micwire(
    cards: Cards,
    config: Config,
    checkout: Checkout,
    round_: int,
    secs: float,
    workdir: Path,
) -> Result:
    rate = cards.rate
    stats = workdir / f"stats-{time.monotonic_ns()}.jsonl"
    rx_env = {"JACK_DEFAULT_SERVER": cards.receiver}
    rx = MicwireAt(
        checkout.python,
        *("receive", "--host", "127.0.0.1", "--port", "0"),
        *("--output-device", "system", "--stats-json", str(stats), *config.receive),
        env=rx_env,
    )
    port = int(rx.wait_for(r"listening on ws://127\.0\.0\.1:(\d+)").group(1))
    tx = MicwireAt(
        checkout.python,
        *("send", f"ws://127.0.0.1:{port}", "--name", "bench", "--device", "system"),
        *config.send,
        env={"JACK_DEFAULT_SERVER": cards.sender},
    )
    count = int(secs * 2)
    probe = TimedProbe(cards.receiver)
    remote: RemotePlayer | None = None
    note = ""
    found: list[float] = []
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    xruns = 0
    try:
        tx.wait_for(r"sending 'bench' from device")
        if cards.separate:
            remote = RemotePlayer(cards.sender, train_of(SEND_RATE, count), workdir)
            remote.ask(r"connect :in_\d+$", 30)
        else:
            probe.client.connect(
                probe.out, wait_named_port(probe, r":in_\d+$", is_input=True, timeout=10)
            )
        try:
            heard_port = wait_named_port(probe, r":out_\d+$", is_input=False, timeout=10)
        except TimeoutError:
            note = why_silent(rx)
        else:
            probe.client.connect(heard_port, probe.inp)
            time.sleep(1.0)  # let the jitter buffer settle before measuring
            before = last_stats(stats)
            started = time.time()
            if remote is not None:
                played = remote.ask("play", secs + 40)
                xruns += sum(started <= t for t in played["xruns"])
                start_us = float(played["played_at_us"])
                time.sleep(0.5)  # the last burst's way through
                starts = [probe.frame_at(start_us + k * 500_000) for k in range(count)]
            else:
                probe.play(train_of(rate, count))
                probe.wait_played(secs + 10)
                time.sleep(0.5)
                starts = [
                    float((probe.played_at_frame or 0) + k * (rate // 2)) for k in range(count)
                ]
            xruns += probe.xruns.between(started, time.time())
            after = last_stats(stats)
            found = latencies(probe.recording(), rate, starts)
    finally:
        tx.signal(signal.SIGINT)
        with contextlib.suppress(AssertionError):
            tx.wait()
        rx.signal(signal.SIGINT)
        with contextlib.suppress(AssertionError):
            rx.wait()
        if remote is not None:
            remote.close()
        probe.close()
    glitches = {k: after.get(k, 0) - before.get(k, 0) for k in (*GLITCHES, "device_underflows")}
    return summarise(
        config.name,
        checkout.label,
        round_,
        rate,
        count,
        found,
        glitches,
        xruns,
        target_ms=after.get("target_ms", 0.0),
        drift_ppm=after.get("drift_ppm", 0.0),
        note=note,
    )


# --- JackTrip -------------------------------------------------------------------------


def free_offset() -> int:
    """A JackTrip port offset (-o) whose ports are free: TCP and UDP 4464+o for the hub
    and the client's UDP bind port, UDP 61002+o for the hub's first client."""
    for offset in range(100 + os.getpid() % 800, 1000):
        try:
            for kind, port in (
                (socket.SOCK_STREAM, 4464 + offset),
                (socket.SOCK_DGRAM, 4464 + offset),
                (socket.SOCK_DGRAM, 61002 + offset),
            ):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free ports for JackTrip")


def receive_glitches(log: Path) -> tuple[int, int]:
    """The hub's receive-ring underruns and overflows so far (its newest ``-I`` line)."""
    found = re.findall(r" recv: (\d+)/(\d+) ", log.read_text(errors="replace"))
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def measure_jacktrip(cards: Cards, round_: int, secs: float, workdir: Path) -> Result:
    rate = cards.rate
    env = {**os.environ, "JACK_DEFAULT_SERVER": cards.receiver, "JACK_NO_START_SERVER": "1"}
    offset = free_offset()
    common = ["-q", "2", "-n", "1", "-D", "-o", str(offset), "-I", "1"]
    hub_log = workdir / f"jacktrip-hub-{time.monotonic_ns()}.log"
    processes: list[subprocess.Popen[bytes]] = []
    probe = TimedProbe(cards.receiver)
    count = int(secs * 2)
    found: list[float] = []
    note = ""
    before = after = (0, 0)
    xruns = 0
    try:
        with open(hub_log, "wb") as out:
            processes.append(
                subprocess.Popen(
                    ["jacktrip", "-S", "-p", "5", *common], stdout=out, stderr=out, env=env
                )
            )
        deadline = time.monotonic() + seconds(10)
        while b"Waiting for client connections" not in hub_log.read_bytes():
            if time.monotonic() > deadline or processes[0].poll() is not None:
                raise RuntimeError(f"the JackTrip hub did not start:\n{hub_log.read_text()}")
            time.sleep(0.05)
        processes.append(
            subprocess.Popen(
                ["jacktrip", "-C", "127.0.0.1", "-J", "jtclient", "-K", "jtremote", *common],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        )
        try:
            send = wait_named_port(probe, r"^jtclient:send_1$", is_input=True, timeout=15)
            heard = wait_named_port(probe, r"^jtremote:receive_1$", is_input=False, timeout=15)
        except TimeoutError as exc:
            note = f"{exc}; ports: {probe.ports(is_input=True) + probe.ports(is_input=False)}"
        else:
            probe.client.connect(probe.out, send)
            probe.client.connect(heard, probe.inp)
            time.sleep(2.1)  # JackTrip's queue settles; a stats line or two
            before = receive_glitches(hub_log)
            started = time.time()
            probe.play(train_of(rate, count))
            probe.wait_played(secs + 10)
            time.sleep(1.1)
            after = receive_glitches(hub_log)
            xruns = probe.xruns.between(started, time.time())
            start = probe.played_at_frame or 0
            found = latencies(
                probe.recording(), rate, [float(start + k * (rate // 2)) for k in range(count)]
            )
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        probe.close()
    glitches = {"underruns": after[0] - before[0], "overflows": after[1] - before[1]}
    return summarise(JACKTRIP, "jacktrip", round_, rate, count, found, glitches, xruns, note=note)


# --- the run ------------------------------------------------------------------------------


@dataclass
class Cards:
    """The JACK servers of a run: the receiver's card (JackTrip's and the probe's too)
    and the sender's (the same one unless it must run at another rate)."""

    receiver: str
    sender: str
    rate: int
    separate: bool = field(init=False)

    def __post_init__(self) -> None:
        self.separate = self.sender != self.receiver


@contextlib.contextmanager
def cards_for(rate: int, two: bool, workdir: Path) -> Iterator[Cards]:
    (workdir / "receiver-card").mkdir()
    with jack_server(workdir / "receiver-card", period=PERIOD, rate=rate) as receiver:
        if rate == SEND_RATE and not two:
            yield Cards(receiver, receiver, rate)
            return
        (workdir / "sender-card").mkdir()
        with jack_server(workdir / "sender-card", period=PERIOD, rate=SEND_RATE) as sender:
            yield Cards(receiver, sender, rate)


def show(r: Result) -> None:
    g = r.glitches
    if r.code == "jacktrip":
        said = f"hub receive buffer: {g['underruns']} underruns, {g['overflows']} overflows"
    else:
        said = (
            f"{g['underruns']} underruns, {g['concealed_samples']} samples concealed, "
            f"{g['skipped_samples']} skipped, {g['late_packets']} late, "
            f"{g['device_underflows']} device underflows; buffer target {r.target_ms:.1f} ms, "
            f"drift {r.drift_ppm:+.0f} ppm"
        )
    print(
        f"{r.config:36s} {r.code:20s} p50 {r.p50_ms:6.1f} ms  p95 {r.p95_ms:6.1f} ms  "
        f"max {r.max_ms:6.1f} ms  heard {r.heard}/{r.bursts}  xruns {r.xruns}",
        flush=True,
    )
    print(f"{'':36s} {'':20s} {r.note or said}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per config")
    parser.add_argument(
        "--rate",
        type=int,
        default=48000,
        choices=(48000, 44100),
        help="the receiver's card's rate (JackTrip's and the probe's too); senders send 48 kHz",
    )
    parser.add_argument(
        "--two-cards",
        action="store_true",
        help="the sender on a card of its own even when it could share the receiver's",
    )
    parser.add_argument(
        "--micwire-python",
        action="append",
        default=[],
        metavar="[LABEL=]PATH",
        help="also run every micwire configuration with this interpreter (another "
        "checkout's .venv/bin/python), in turns with this checkout's; repeatable",
    )
    parser.add_argument("--rounds", type=int, default=1, help="run everything this many times")
    parser.add_argument("--no-jacktrip", action="store_true", help="do not measure JackTrip")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only the micwire configurations whose name contains TEXT (repeatable); "
        "JackTrip runs unless --no-jacktrip",
    )
    parser.add_argument("--play-on", help=argparse.SUPPRESS)  # the player's own process
    parser.add_argument("--train", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.play_on:
        player(args.play_on, args.train)
        return
    configs = [c for c in CONFIGS if not args.only or any(t in c.name for t in args.only)]
    checkouts = [Checkout.of(sys.executable), *map(Checkout.of, args.micwire_python)]
    jacktrip = not args.no_jacktrip
    if jacktrip and shutil.which("jacktrip") is None:
        print("jacktrip is missing (Debian: apt-get install jacktrip): not measured", flush=True)
        jacktrip = False
    two = args.two_cards or args.rate != SEND_RATE
    print(
        f"# {datetime.datetime.now().isoformat(timespec='minutes')}, {os.cpu_count()} cores, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; receiver's card "
        f"{args.rate} Hz, {PERIOD}-frame periods ({PERIOD / args.rate * 1000:.2f} ms); "
        + (f"senders on a {SEND_RATE} Hz card of their own" if two else "senders on the same card")
        + f"; {args.seconds:g} s per configuration",
        flush=True,
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp, cards_for(args.rate, two, Path(tmp)) as cards:
        for round_ in range(1, args.rounds + 1):
            if jacktrip:
                results.append(measure_jacktrip(cards, round_, args.seconds, Path(tmp)))
                show(results[-1])
            for config in configs:
                for checkout in checkouts:
                    results.append(
                        measure_micwire(cards, config, checkout, round_, args.seconds, Path(tmp))
                    )
                    show(results[-1])
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
