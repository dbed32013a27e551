"""The test rig: real PortAudio devices on a machine without a sound card, and the pieces
every integration test starts (tests/conftest.py makes fixtures of some of them).

- :func:`seconds`: the one time unit every deadline is given in (MICWIRE_TEST_TIME_FACTOR).
- :func:`wait_until` / :func:`until`: wait on a condition with a scaled deadline (never a
  sleep that guesses how long something takes).
- :func:`jack_server`: a JACK server with the dummy driver (a paced virtual sound card,
  48 kHz, 1024-frame periods unless asked), under a name no other test process uses.
- :class:`Probe`: a JACK client that plays a known signal into a port and records another,
  a loopback cable with a real clock.
- :func:`alsa_virtual_mic`: an ALSA ``file`` plugin device whose capture returns a raw file
  sample for sample (unpaced).
- :class:`Micwire`: the ``micwire`` command in a subprocess, its log read line by line
  (:func:`receiver` starts ``micwire receive`` on a free port).
- :func:`running_receiver` / :func:`receiver_on`: a receiver in the test's own event loop.
- :func:`hello`, :func:`converse`, :func:`good_packet`: speaking the wire by hand.
- :func:`free_port`, :func:`small_disk`.

See ../shared/TESTRIG.md for the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

RATE = 48000
#: One time unit scales every wait on a slow machine: MICWIRE_TEST_TIME_FACTOR=3 make test
TIME_FACTOR = float(os.environ.get("MICWIRE_TEST_TIME_FACTOR", "1"))


def seconds(s: float) -> float:
    """A timeout of ``s`` seconds, scaled for slow machines."""
    return s * TIME_FACTOR


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it is true (returns its value), at most ``seconds(timeout)``;
    ``what`` says what did not happen."""
    deadline = time.monotonic() + seconds(timeout)
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (not within {seconds(timeout):g} s)")
        time.sleep(0.02)
    return value


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """:func:`wait_until` for a test's event loop: the loop runs while it waits."""
    deadline = time.monotonic() + seconds(timeout)
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (not within {seconds(timeout):g} s)")
        await asyncio.sleep(0.02)
    return value


#: Ports for the tests' servers: below Linux's ephemeral range (32768-60999), where a
#: client socket of another test never lands (a port picked by bind(0) can be taken as a
#: connection's source port before the server binds it, or after a server died and before
#: a new one binds it again), and a range of 1000 for each test process (xdist worker).
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_PORTS = itertools.cycle(range(20000 + 1000 * (_WORKER % 12), 21000 + 1000 * (_WORKER % 12)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, of this test process's
    own range."""
    for _ in range(1000):
        port = next(_PORTS)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this test process's range")


_jack_pids: dict[str, int] = {}
PERIOD = 1024  # tests want no xruns on a loaded 2-core machine; the latency bench uses 256


#: JACK runs at most 8 servers on a machine at once ("Too many servers already active"):
#: the tests' own servers take at most this many of them, whatever the number of workers
#: or test runs (a slot is a lock file held while the server runs). A server is named
#: after its slot: JACK frees the registry entry of a server that was killed (a test
#: does that) only when a server of the same name starts, so unique names would fill
#: the registry for good.
JACK_SLOTS = 4
_JACK_SLOT_DIR = Path("/tmp/micwire-jack-slots")


@contextmanager
def _jack_slot() -> Iterator[int]:
    import fcntl

    _JACK_SLOT_DIR.mkdir(exist_ok=True)
    deadline = time.monotonic() + 600
    while True:
        for k in range(JACK_SLOTS):
            handle = open(_JACK_SLOT_DIR / f"slot-{k}", "w")  # noqa: SIM115 - closed below
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            try:
                yield k
            finally:
                handle.close()  # (releases the lock)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no JACK slot free in {_JACK_SLOT_DIR} for 10 minutes")
        time.sleep(0.1)


@contextmanager
def jack_server(tmp_path: Path, period: int = PERIOD, rate: int = RATE) -> Iterator[str]:
    """A JACK dummy server (a paced sound card at ``rate``) for as long as the block runs;
    its name: its slot's (unique on the machine while it runs). At most JACK_SLOTS of
    them run at once (the others wait for a slot)."""
    with _jack_slot() as slot:
        # short: libjack crashes (malloc assertion) on some longer server names
        yield from _jack_server(tmp_path, period, rate, f"mwslot{slot}")


def _jack_server(tmp_path: Path, period: int, rate: int, name: str) -> Iterator[str]:
    # JACK_NO_START_SERVER: a client started before the server is up must not spawn its own
    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1", "JACK_NO_START_SERVER": "1"}
    # a server of this name left by a test process that died (its slot freed with it) must
    # be gone first: else the new one cannot start, and the old one would answer for it
    until = time.monotonic() + seconds(10)
    while subprocess.run(["jack_lsp", "-s", name], capture_output=True, env=env).returncode == 0:
        if time.monotonic() > until:
            raise RuntimeError(f"a JACK server {name!r} left by another test still runs")
        time.sleep(0.2)
    log = open(tmp_path / "jackd.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["jackd", "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + seconds(10)
        while True:
            probe = subprocess.run(
                ["jack_lsp", "-s", name], capture_output=True, text=True, env=env
            )
            if probe.returncode == 0 and "system:playback_1" in probe.stdout:
                if proc.poll() is not None:  # an older server of this name answered
                    log_text = (tmp_path / "jackd.log").read_text()
                    raise RuntimeError(f"another JACK server {name!r} still runs\n{log_text}")
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = (tmp_path / "jackd.log").read_text()
                raise RuntimeError(f"jackd did not start: {probe.stderr}\n{log_text}")
            time.sleep(0.1)
        _jack_pids[name] = proc.pid
        yield name
    finally:
        _jack_pids.pop(name, None)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # gone before its slot (and name) is free again
            proc.kill()
            proc.wait(10)
        log.close()


def jack_pid(server: str) -> int:
    """The process id of the JACK server :func:`jack_server` started as ``server`` (to
    stop or pause that one, and nothing else)."""
    return _jack_pids[server]


class XrunWatch:
    """When (time.time()) the JACK graph missed a deadline: a stall of this VM shows
    there, and explains a glitch downstream. Watches through ``client`` (not yet active)."""

    def __init__(self, client: Any) -> None:
        self.times: list[float] = []
        self.client = client
        client.set_xrun_callback(lambda _delay: self.times.append(time.time()))

    @classmethod
    def own(cls, server: str) -> XrunWatch:
        """A watch on a JACK client of its own, with no ports (``close()`` it)."""
        import jack

        watch = cls(jack.Client("xruns", servername=server, no_start_server=True))
        watch.client.activate()
        return watch

    def between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.times)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class Probe:
    """A JACK client with one output (plays ``signal`` once armed) and one input (records)."""

    def __init__(self, server: str) -> None:
        import jack

        self.client = jack.Client("probe", servername=server, no_start_server=True)
        self.out = self.client.outports.register("out")
        self.inp = self.client.inports.register("in")
        self._signal = np.zeros(0, np.float32)
        self._pos = 0
        self._armed = threading.Event()
        self.recorded: list[np.ndarray] = []
        self.played_at_frame: int | None = None  # recorded-frame index where playback began
        self._frames_recorded = 0
        self.xruns = XrunWatch(self.client)  # audio anywhere in the graph may be lost then
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        out = self.out.get_array()
        out[:] = 0.0
        if self._armed.is_set() and self._pos < len(self._signal):
            if self.played_at_frame is None:
                self.played_at_frame = self._frames_recorded
            n = min(frames, len(self._signal) - self._pos)
            out[:n] = self._signal[self._pos : self._pos + n]
            self._pos += n
        self.recorded.append(self.inp.get_array().copy())
        self._frames_recorded += frames

    def play(self, signal: np.ndarray) -> None:
        self._signal = signal.astype(np.float32)
        self._pos = 0
        self._armed.set()

    def wait_played(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._pos < len(self._signal):
            if time.monotonic() > deadline:
                raise TimeoutError("probe signal did not finish playing")
            time.sleep(0.05)

    def recording(self) -> np.ndarray:
        return np.concatenate(self.recorded) if self.recorded else np.zeros(0, np.float32)

    def ports(self, *, is_input: bool) -> list[str]:
        """Audio ports of other clients (not `system`, not the probe)."""
        names = [
            p.name
            for p in self.client.get_ports(is_audio=True, is_input=is_input, is_output=not is_input)
        ]
        return [n for n in names if not n.startswith(("system:", "probe:"))]

    def wait_port(self, *, is_input: bool, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not (found := self.ports(is_input=is_input)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no client {'input' if is_input else 'output'} port appeared")
            time.sleep(0.05)
        return found[0]

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def write_alsa_config(tmp_path: Path, capture_raw: Path) -> Path:
    conf = tmp_path / "alsa-virtmic.conf"
    conf.write_text(
        f'pcm.virtmic {{ type file; slave.pcm "nullpcm"; file "/dev/null"; '
        f'infile "{capture_raw}"; format "raw" }}\n'
        "pcm.nullpcm { type null }\n"
    )
    return conf


#: Every Micwire of the running test (conftest stops what is left when the test ends).
_started: list[Micwire] = []


def stop_leftover_processes() -> None:
    """Kill the ``micwire`` subprocesses the test that ends now left running."""
    for process in _started:
        process.kill()
    _started.clear()


class Micwire:
    """``python -m micwire ARGS`` in a subprocess; stderr collected by a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        _started.append(self)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "micwire", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "JACK_NO_START_SERVER": "1", **(env or {})},
            # a group of its own: kill() reaches what it started (a supervisor's workers)
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stdout: list[str] = []
        self._out_reader = threading.Thread(
            target=lambda: self._stdout.extend(self.proc.stdout or ()), daemon=True
        )
        self._out_reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait for a log line matching ``pattern`` (searched in every line so far)."""
        deadline = time.monotonic() + seconds(timeout)
        regex = re.compile(pattern)
        checked = 0
        while True:
            for line in self.lines[checked:]:
                if m := regex.search(line):
                    return m
            checked = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0 or (
                self.proc.poll() is not None and self._new.empty() and not self._reader.is_alive()
            ):
                raise AssertionError(f"no line matching {pattern!r}; log:\n" + self.log)
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=min(left, 0.2))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            self.proc.wait(timeout=seconds(timeout))
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self._reader.join(5)
            raise AssertionError(
                f"{self.args[0]} did not exit within {exc.timeout:g} s; log:\n{self.log}"
            ) from exc
        self._reader.join(5)
        self._out_reader.join(5)
        return self.proc.returncode

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    def kill(self) -> None:
        """SIGKILL to the process and everything it started (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def receiver(*args: str, env: dict[str, str] | None = None) -> tuple[Micwire, int]:
    rx = Micwire("receive", "--host", "127.0.0.1", "--port", "0", *args, env=env)
    port = int(rx.wait_for(r"listening on ws://127\.0\.0\.1:(\d+)").group(1))
    return rx, port


@asynccontextmanager
async def running_receiver(**settings: Any) -> AsyncIterator[tuple[Any, str]]:
    """A receiver in this event loop on a free port (no playback unless asked):
    ``(receiver, "ws://127.0.0.1:PORT")``. ``settings``: ReceiverConfig's fields."""
    from micwire.receiver.server import Receiver, ReceiverConfig

    receiver = Receiver(
        ReceiverConfig(**{"host": "127.0.0.1", "port": 0, "play": False, **settings})
    )
    async with _serving(receiver) as port:
        yield receiver, f"ws://127.0.0.1:{port}"


@asynccontextmanager
async def receiver_on(port: int, **settings: Any) -> AsyncIterator[Any]:
    """A receiver in this event loop on a given port (to restart one where its senders
    look for it)."""
    from micwire.receiver.server import Receiver, ReceiverConfig

    receiver = Receiver(ReceiverConfig(host="127.0.0.1", port=port, play=False, **settings))
    async with _serving(receiver):
        yield receiver


@asynccontextmanager
async def _serving(receiver: Any) -> AsyncIterator[int]:
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(receiver.run(stop, ready.set_result))
    done, _ = await asyncio.wait({task, ready}, timeout=seconds(10), return_when="FIRST_COMPLETED")
    if task in done:  # it could not start: its own error says why
        task.result()
    if ready not in done:
        task.cancel()
        raise AssertionError(f"the receiver was not listening within {seconds(10):g} s")
    try:
        yield ready.result()
    finally:
        stop.set()
        await task


def hello(**changes: Any) -> str:
    """A sender's hello as JSON text, with ``changes`` to its fields."""
    from micwire.common.protocol import Hello, StreamParams

    d = json.loads(Hello("bad", StreamParams(), 0, 0).serialize())
    d.update(changes)
    return json.dumps(d)


async def converse(url: str, *messages: str | bytes) -> tuple[int | None, str, list[Any]]:
    """Send messages on a raw connection; return the close code, reason and replies."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    replies: list[Any] = []
    async with connect(url, compression=None, max_size=None) as ws:
        try:
            for message in messages:
                await ws.send(message)
            async for reply in ws:
                replies.append(reply)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
    return ws.close_code, ws.close_reason, replies


def good_packet(ts: int = 0, samples: int = 960) -> bytes:
    """A well-formed PCM packet of silence at timestamp ``ts``."""
    from micwire.common.protocol import Packet

    return Packet(0, ts, samples, b"\0" * samples * 2).serialize()


def best_lag(signal: np.ndarray, recording: np.ndarray) -> tuple[int, float]:
    """Offset of ``signal`` in ``recording`` (FFT cross-correlation) and the normalised peak."""
    n = len(signal) + len(recording)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recording, size) * np.conj(np.fft.rfft(signal, size)), size)
    lag = int(np.argmax(corr[: len(recording)]))
    seg = recording[lag : lag + len(signal)]
    if len(seg) < len(signal):
        return lag, 0.0
    norm = float(np.linalg.norm(seg) * np.linalg.norm(signal)) or 1.0
    return lag, float(np.dot(seg, signal)) / norm


def read_single(directory: Path, pattern: str) -> tuple[Any, int, Path]:
    import soundfile as sf

    found = sorted(directory.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {directory}, found {found}"
    data, rate = sf.read(str(found[0]), dtype="int16", always_2d=True)
    return data, rate, found[0]


def expected_tone(n: int, hz: float = 440.0, rate: int = RATE) -> np.ndarray:
    """What ``--source tone:HZ`` sends: a sine at -12 dBFS, sample for sample."""
    t = np.arange(n) / rate
    return np.rint(np.sin(2 * np.pi * hz * t) * 0.25 * 32767).astype(np.int16)


@contextmanager
def small_disk(tmp_path: Path, size: str = "1m") -> Iterator[Path]:
    """A tiny file system to fill up (tmpfs: needs root, as `make test` has in CI)."""
    import pytest

    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
