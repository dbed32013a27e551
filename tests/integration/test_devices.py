"""End to end through real PortAudio streams on virtual sound cards (tests/integration/rig.py):
a signal enters a real InputStream, crosses a real WebSocket, plays out of a real
OutputStream and is recorded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rig import (
    PERIOD,
    RATE,
    Micwire,
    Probe,
    XrunWatch,
    best_lag,
    expected_tone,
    jack_pid,
    jack_server,
    read_single,
    receiver,
    seconds,
    wait_until,
    write_alsa_config,
)


def probe_signal(n: int, seed: int = 5) -> np.ndarray:
    """Band-limited noise at about -12 dBFS, on exact int16 steps."""
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.normal(0, 0.25, n + 31), np.hanning(32) / 16, mode="valid")[:n]
    return np.clip(np.round(x * 32768) / 32768, -0.9, 0.9)


def heard_pieces(signal_in: np.ndarray, played_out: np.ndarray) -> list[float]:
    """How well each 25 ms piece of the signal is found in what the receiver played.
    Pieces, because drift compensation may play up to 2000 ppm fast or slow."""
    piece = RATE // 40
    return [
        best_lag(signal_in[i : i + piece], played_out.astype(float))[1]
        for i in range(0, len(signal_in) - piece + 1, piece)
    ]


def captured_samples(sender_log: str) -> int:
    match = re.search(r"s of audio \((\d+) samples\)", sender_log)
    assert match, sender_log
    return int(match.group(1))


#: Counters in a receiver's stats line that say live playback lost or changed audio.
PLAYBACK_GLITCHES = (
    "underruns",
    "late_packets",
    "lost_samples",
    "skipped_samples",
    "device_underflows",
    "callback_errors",
)


@dataclass
class Run:
    signal_in: np.ndarray  # what the probe played into the sender's device
    played_out: np.ndarray  # what the probe heard from the receiver's device
    recording: np.ndarray  # the receiver's file
    tx_log: str
    glitches: int  # xruns of the JACK graph + playback glitches the receiver counted


def counted_glitches(stats: Path, probe: Probe, start: float, end: float) -> int:
    """Glitches between ``start`` and ``end`` (time.time()): JACK xruns, and the receiver's
    playback counters from its last stats line before to its first line after."""
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    before = [x for x in lines if x["time"] <= start][-1:] or [dict.fromkeys(PLAYBACK_GLITCHES, 0)]
    after = [x for x in lines if x["time"] >= end][:1] or lines[-1:]
    counted = sum(after[0][k] - before[0][k] for k in PLAYBACK_GLITCHES) if after else 0
    return counted + probe.xruns.between(start, end)


def assert_heard(run: Run, piece_floor: float) -> None:
    """Live playback carried every 25 ms piece of the signal — or, when this loaded VM
    stalled, the loss was counted (a JACK xrun, a receiver underrun or skip) and was small."""
    pieces = np.array(heard_pieces(run.signal_in, run.played_out))
    missed = int(np.sum(pieces <= piece_floor))
    if run.glitches == 0:
        assert missed == 0, ("audio lost and nothing counted", pieces.round(3).tolist())
    else:
        assert missed <= 0.1 * len(pieces), (run.glitches, pieces.round(3).tolist())
    assert np.mean(pieces[pieces > piece_floor]) > 0.95, pieces.round(3).tolist()


def wait_for_live_playback(probe: Probe, timeout: float = 10.0) -> None:
    """Play a 50 ms pilot into the sender until the probe hears it from the receiver: live
    playback then runs end to end. (The pilot is other noise than the signal, and ends
    before it.)"""
    pilot = probe_signal(RATE // 20, seed=11)
    deadline = time.monotonic() + seconds(timeout)
    while True:
        heard_from = len(probe.recording())
        probe.play(pilot)
        probe.wait_played(seconds(5))
        until = time.monotonic() + seconds(0.5)
        while time.monotonic() < until:
            if np.max(np.abs(probe.recording()[heard_from:]), initial=0.0) > 0.05:
                return
            time.sleep(0.02)
        assert time.monotonic() < deadline, "the receiver played nothing of the pilot"


def heard_to_the_end(probe: Probe, signal_in: np.ndarray, timeout: float = 2.0) -> None:
    """Wait until the probe has heard the signal's last 25 ms from the receiver, or a
    playback glitch kept it from that (the caller judges what was heard, and counts
    glitches up to now): then everything that was going to be played has been."""
    tail = signal_in[-RATE // 40 :]
    deadline = time.monotonic() + seconds(timeout)
    while time.monotonic() < deadline:
        heard = probe.recording()[-RATE:]  # a second: far more than playback's latency
        if len(heard) >= len(tail) and best_lag(tail, heard.astype(float))[1] > 0.6:
            return
        time.sleep(0.05)


def stats_line_after(stats: Path, stream: str, after: float) -> bool:
    """Has the receiver written a ``--stats-json`` line for ``stream`` timed after ``after``
    (time.time())?"""
    if not stats.exists():
        return False
    lines = [json.loads(line) for line in stats.read_text().splitlines() if line.endswith("}")]
    return any(x["stream"] == stream and x["time"] >= after for x in lines)


def device_lost_audio(run: Run) -> bool:
    """Did the sender say its input device lost audio before micwire could read it (a
    JACK xrun: the machine stalled)? Then the recording cannot hold all of the signal."""
    return "LOST audio" in run.tx_log and run.glitches > 0


def assert_recorded_but_what_the_device_lost(run: Run, piece_floor: float) -> None:
    """The sender lost audio at the device, and said so (a stall of this loaded VM, the
    JACK graph's xrun): every 25 ms piece of the signal is still in the recording as
    well as without a loss, but for the few the lost stretch cut into (what
    :func:`assert_heard` allows live playback)."""
    pieces = np.array(heard_pieces(run.signal_in, run.recording[:, 0] / 32768))
    missed = int(np.sum(pieces <= piece_floor))
    assert missed <= 0.1 * len(pieces), (run.tx_log, pieces.round(4).tolist())


def run_through_jack(jack: str, tmp_path: Path, codec: str, *extra: str) -> Run:
    env = {"JACK_DEFAULT_SERVER": jack}
    rec, stats = tmp_path / "rec", tmp_path / "stats.jsonl"
    rx, port = receiver(
        "--record",
        str(rec),
        "--output-device",
        "system",
        "--stats-json",
        str(stats),
        env=env,
    )
    probe = Probe(jack)
    tx = None
    try:
        tx = Micwire(
            "send",
            f"ws://127.0.0.1:{port}",
            "--name",
            f"jack-{codec}",
            "--device",
            "system",
            "--codec",
            codec,
            *extra,
            env=env,
        )
        try:
            rx.wait_for(r"stream 'jack-.*' from")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- sender:\n{tx.log}") from None
        probe.client.connect(probe.out, probe.wait_port(is_input=True, timeout=seconds(10)))
        probe.client.connect(probe.wait_port(is_input=False, timeout=seconds(10)), probe.inp)
        # ports exist from Pa_OpenStream on, but carry audio only once the stream runs
        tx.wait_for(r"sending 'jack-\w+' from device")
        # live playback starts at its target behind the newest audio, passing over what
        # piled up while the output stream started (the recording keeps it): play after
        wait_for_live_playback(probe)
        signal_in = probe_signal(RATE * 2)
        start = time.time()
        probe.play(signal_in)
        probe.wait_played(seconds(10))
        heard_to_the_end(probe, signal_in)  # the tail crossed the network and was played
        end = time.time()
        wait_until(
            lambda: stats_line_after(stats, f"jack-{codec}", end), "no stats line after the signal"
        )
        tx.signal(signal.SIGINT)
        assert tx.wait(seconds(20)) == 0, tx.log
        rx.wait_for(r"stream 'jack-\w+' from .*: complete")
    finally:
        if tx is not None:
            tx.kill()
        rx.signal(signal.SIGTERM)
        rc = rx.wait()
        probe.close()
    assert rc == 0, rx.log
    data, rate, _ = read_single(rec, f"jack-{codec}-*.wav")
    assert rate == RATE
    glitches = counted_glitches(stats, probe, start, end)
    return Run(signal_in, probe.recording(), data, tx.log, glitches)


@pytest.mark.quiet
@pytest.mark.parametrize(
    ("extra", "per_packet"),
    [
        # every device block (one period) leaves at once, the lowest latency: a 1024-sample
        # block is cut at the 960-sample frame (20 ms), two packets
        ((), PERIOD // 2),
        # --gather, 60 ms frames (2880 samples): two 1024-sample periods a packet
        (("--gather", "--frame-ms", "60"), 2 * PERIOD),
    ],
    ids=["block-by-block", "gathered"],
)
def test_pcm_end_to_end_through_real_devices(
    jack: str, tmp_path: Path, extra: tuple[str, ...], per_packet: int
) -> None:
    run = run_through_jack(jack, tmp_path, "pcm", *extra)
    captured = captured_samples(run.tx_log)
    assert len(run.recording) == captured
    assert "nothing lost" in run.tx_log
    packets = re.search(r"sent (\d+) packets", run.tx_log)
    assert packets, run.tx_log
    # one packet per hand-off (and the final empty one): gathering means fewer wake-ups
    assert captured / (int(packets.group(1)) - 1) >= 0.9 * per_packet, run.tx_log
    # the recording holds the probe signal: PortAudio's float->int16 step is the only change
    want = run.signal_in * 32768
    if device_lost_audio(run):
        assert_recorded_but_what_the_device_lost(run, 0.9999)
    else:
        lag, peak = best_lag(want, run.recording[:, 0].astype(float))
        assert peak > 0.9999, (peak, run.tx_log)
        assert np.max(np.abs(run.recording[lag : lag + len(want), 0] - want)) <= 1.0
    # ...and the receiver played it live, intact
    assert_heard(run, 0.98)


@pytest.mark.quiet
def test_opus_end_to_end_through_real_devices(jack: str, tmp_path: Path) -> None:
    run = run_through_jack(jack, tmp_path, "opus", "--bitrate", "128000")
    assert len(run.recording) == captured_samples(run.tx_log)
    if device_lost_audio(run):
        assert_recorded_but_what_the_device_lost(run, 0.6)
    else:
        _, peak = best_lag(run.signal_in * 32768, run.recording[:, 0].astype(float))
        assert peak > 0.95, (peak, run.tx_log)
    assert_heard(run, 0.6)  # lossy: every piece there


def test_a_sender_whose_sound_server_dies_says_so_and_exits(tmp_path: Path) -> None:
    """A headless sender must not go on sending nothing: it says what happened and exits
    non-zero (a service manager starts it again), after delivering what it captured."""
    rec = tmp_path / "rec"
    with jack_server(tmp_path) as name:
        env = {"JACK_DEFAULT_SERVER": name}
        rx, port = receiver("--no-play", "--record", str(rec), env=env)
        tx = Micwire(
            "send", f"ws://127.0.0.1:{port}", "--device", "system", "--name", "orphan", env=env
        )
        try:
            tx.wait_for(r"sending 'orphan' from device")
            time.sleep(seconds(1))
            # stopped, not killed: a killed JACK server leaves its entry in JACK's shared
            # registry, and after a few of those no server starts on this machine. This
            # test's server only: another test's may be running at the same time
            os.kill(jack_pid(name), signal.SIGTERM)
            assert tx.wait(seconds(20)) == 1, tx.log
            rx.wait_for(r"stream 'orphan' from .*: complete")
        finally:
            tx.kill()
            rx.signal(signal.SIGTERM)
            rx.wait()
    error = tx.log.splitlines()[-1]
    assert re.fullmatch(
        r"micwire: error: device 'system' stopped delivering audio \(\d+ s without any\): "
        r"was it unplugged, or did its sound server stop\?",
        error,
    ), tx.log
    data, _, _ = read_single(rec, "orphan-*.wav")
    assert len(data) >= RATE  # what was captured before the server died was delivered


def test_a_stalled_sound_server_does_not_hold_up_the_senders_confirmation(
    tmp_path: Path,
) -> None:
    """The receiver plays a stream live; its sound server stalls (stopped) as the sender
    stops. What the sender waits for is the recording: it is confirmed at once, and the
    sender says nothing was lost; the receiver closes its device when the server is back."""
    rec = tmp_path / "rec"
    with jack_server(tmp_path) as name:
        env = {"JACK_DEFAULT_SERVER": name}
        rx, port = receiver("--record", str(rec), env=env)
        tx = Micwire(
            "send", f"ws://127.0.0.1:{port}", "--source", "tone:440", "--name", "stall",
            "--duration", "4",
        )  # fmt: skip
        jackd = jack_pid(name)
        try:
            rx.wait_for(r"stream 'stall': recording to")
            time.sleep(seconds(2.5))
            os.kill(jackd, signal.SIGSTOP)
            assert tx.wait(seconds(15)) == 0, tx.log
            assert "nothing lost (the receiver confirmed every sample)" in tx.lines[-1]
        finally:
            os.kill(jackd, signal.SIGCONT)
            tx.kill()
            rx.signal(signal.SIGTERM)
            rx.wait()
    data, _, _ = read_single(rec, "stall-*.wav")
    assert len(data) == 4 * RATE


def test_a_receiver_whose_sound_server_stalls_still_exits(tmp_path: Path) -> None:
    """Stopped while its sound server is stalled, the receiver finalises its recording,
    says the device did not close, and exits: PortAudio cannot close a stream of a stalled
    JACK server, and its exit handler would wait for that for ever."""
    rec = tmp_path / "rec"
    with jack_server(tmp_path) as name:
        rx, port = receiver("--record", str(rec), env={"JACK_DEFAULT_SERVER": name})
        tx = Micwire(
            "send", f"ws://127.0.0.1:{port}", "--source", "tone:440", "--name", "stuck",
            "--duration", "30",
        )  # fmt: skip
        jackd = jack_pid(name)
        try:
            rx.wait_for(r"stream 'stuck': recording to")
            time.sleep(seconds(1))
            os.kill(jackd, signal.SIGSTOP)
            rx.signal(signal.SIGINT)
            assert rx.wait(seconds(20)) == 0, rx.log
        finally:
            os.kill(jackd, signal.SIGCONT)
            tx.kill()
            rx.kill()
    assert "the output device did not close" in rx.log, rx.log
    data, _, _ = read_single(rec, "stuck-*.wav")
    assert len(data) >= RATE  # what came before the stop is in a file that opens


@pytest.mark.quiet  # (the quiet tests' JACK server)
def test_devices_lists_the_jack_card(jack: str) -> None:
    cli = Micwire("devices", env={"JACK_DEFAULT_SERVER": jack})
    assert cli.wait() == 0
    assert "system" in cli.stdout and "JACK Audio Connection Kit" in cli.stdout


@pytest.mark.parametrize("codec", ["pcm", "opus"])
def test_alsa_virtual_mic_is_recorded_sample_for_sample(tmp_path: Path, codec: str) -> None:
    """The ALSA file plugin returns a raw file exactly: the recording must equal it (PCM),
    or hold it, as long to the sample (Opus: PortAudio gathers whole frames from the
    device, and the length, not a multiple of a frame, must still come out exact)."""
    n = RATE + 4321
    if codec == "pcm":
        source = np.random.default_rng(9).integers(-30000, 30000, n, dtype=np.int16)
    else:  # a sweep: lossy coding keeps its shape, so it can be found in the recording
        t = np.arange(n) / RATE
        source = (8000 * np.sin(2 * np.pi * (200 + 900 * t) * t)).astype(np.int16)
    raw = tmp_path / "mic.raw"
    raw.write_bytes(source.astype("<i2").tobytes())
    env = {
        "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{write_alsa_config(tmp_path, raw)}",
        "JACK_NO_START_SERVER": "1",
    }
    rec = tmp_path / "rec"
    rx, port = receiver("--record", str(rec), "--no-play")
    try:
        tx = Micwire(
            "send",
            f"ws://127.0.0.1:{port}",
            "--name",
            "virtmic",
            "--device",
            "virtmic",
            "--duration",
            str(n / RATE),
            *("--codec", codec, "--bitrate", "128000"),
            env=env,
        )
        assert tx.wait(seconds(30)) == 0, tx.log
        rx.wait_for("stream 'virtmic'.*: complete")
    finally:
        rx.signal(signal.SIGINT)
        assert rx.wait() == 0
    data, _, _ = read_single(rec, "virtmic-*.wav")
    # this virtual mic is not paced (it delivers as fast as the CPU allows): every block
    # goes straight into the sender's spool, which holds far more than this
    assert "nothing lost" in tx.log
    if codec == "pcm":
        assert np.array_equal(data[:, 0], source)
    else:
        assert len(data) == n
        lag, peak = best_lag(source.astype(float), data[:, 0].astype(float))
        assert lag == 0 and peak > 0.95, (lag, peak)


def stalled(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Did playback stall between two stats lines (an underrun, or a trim that caught up)?"""
    return any(after[k] != before[k] for k in ("underruns", "skipped_samples"))


@pytest.mark.quiet(first=True)  # a minute long: started at once
def test_clock_drift_is_compensated_without_dropping_or_repeating(
    jack: str, tmp_path: Path
) -> None:
    """Two senders whose clocks run 300 ppm fast and 300 ppm slow play for a minute into a
    receiver on the JACK clock: the buffer stays at its target, nothing is dropped or
    concealed, and the receiver's drift estimate finds the +-300 ppm."""
    env = {"JACK_DEFAULT_SERVER": jack}
    stats = tmp_path / "stats.jsonl"
    rx, port = receiver("--output-device", "system", "--stats-json", str(stats), env=env)
    seconds_run = 60
    senders = [
        Micwire(
            "send",
            f"ws://127.0.0.1:{port}",
            "--name",
            name,
            "--source",
            "tone:300",
            "--frame-ms",
            "10",
            "--clock-ppm",
            str(ppm),
            "--duration",
            str(seconds_run),
            env=env,
        )
        for name, ppm in (("fast", 300), ("slow", -300))
    ]
    try:
        for tx in senders:
            assert tx.wait(seconds_run + 30) == 0, tx.log
    finally:
        for tx in senders:
            tx.kill()
        rx.signal(signal.SIGINT)
        rx.wait()
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    for name, ppm in (("fast", 300), ("slow", -300)):
        mine = [x for x in lines if x["stream"] == name]
        assert len(mine) > seconds_run - 5
        first, last = mine[10], mine[-1]
        # an underrun here is a whole-machine stall (both streams at once, seen on this
        # 2-core box under load), not drift: the buffer conceals it. A stall of the "card"
        # alone (JACK's dummy driver losing time) fills the buffer instead, and the trim
        # that catches up skips audio. Either is counted, and is rare
        stalls = sum(stalled(a, b) for a, b in pairwise(mine[10:]))
        assert stalls <= 3
        # once both streams are up (starting a JACK client can stall the graph), no audio
        # is dropped or played twice over the long run; the only skip allowed is the one
        # that catches up after such a stall (the jitter buffer's documented restart)
        dropped = last["skipped_samples"] - first["skipped_samples"]
        assert (last["late_packets"], last["lost_samples"]) == (0, 0)
        assert dropped <= stalls * 0.1 * RATE, [
            (x["seconds"], x["buffer_ms"], x["target_ms"], x["underruns"], x["skipped_samples"])
            for x in mine
        ]
        settled = mine[30:-3]  # the estimate's window is 30 s; the last lines are the ending
        # the estimate is the sender's clock against the sound card's: JACK's dummy driver
        # loses time when this VM stalls (measured: the "card" 740 ppm slow for a while), so
        # each clock is judged against the local one, and the drift against their difference
        clocks = [(x["drift_ppm"], x["sender_clock_ppm"], x["device_clock_ppm"]) for x in settled]
        # the sender's clock within 80 ppm: that still tells +300 from 0
        assert np.median([c[1] for c in clocks]) == pytest.approx(ppm, abs=80), clocks
        assert np.median([c[0] - (c[1] - c[2]) for c in clocks]) == pytest.approx(0, abs=30), clocks
        # the depth at each device pull (smoothed) stays bounded and ends at the target
        # (a scheduling stall on this 2-core machine may push it off for a while)
        errors = [x["depth_error_ms"] for x in settled]
        assert max(abs(e) for e in errors) < 60.0, (name, errors)
        # a stall raises the target (underrun memory); the depth error that leaves is worked
        # off with the controller's ~5 s time constant (measured: +10.5 ms 1 s after, +0.3 ms
        # 15 s after). Judge the end of the run, or, when a stall came too close to the end
        # to judge its recovery, the seconds before that stall. Judged by the median of those
        # seconds: one reading off by a VM hiccup (4.05 ms once) is not a drift left over
        stalled_at = [i for i in range(1, len(settled)) if stalled(settled[i - 1], settled[i])]
        if not stalled_at:
            assert np.median(np.abs(errors[-5:])) < 4.0, (name, errors)
        elif len(settled) - stalled_at[-1] >= 10:  # going, if not yet gone
            peak = max(abs(e) for e in errors[stalled_at[-1] :])
            assert np.median(np.abs(errors[-3:])) < max(4.0, 0.7 * peak), (name, errors)
        else:
            before = errors[max(0, stalled_at[-1] - 5) : stalled_at[-1]]
            if len(stalled_at) == 1 or stalled_at[-1] - stalled_at[-2] >= 15:
                assert np.median(np.abs(before)) < 4.0, (name, errors)


@dataclass
class ProxiedStream:
    tx: Micwire
    proxy: Any
    recording: np.ndarray  # filled in when the stream has ended
    sidecar: dict[str, Any]
    stats: list[dict[str, Any]]
    xruns: XrunWatch  # when the JACK graph missed a deadline (a stall of this VM)


@contextmanager
def tone_through_proxy(
    jack: str, tmp_path: Path, name: str, duration_s: int, **impairment: float
) -> Iterator[ProxiedStream]:
    """A tone sender -> impairment proxy -> receiver playing on the JACK card, recording and
    writing stats. The body impairs the link and waits for the sender; afterwards the
    recording, its sidecar and the stats lines are in the yielded object."""
    from proxy import ProxyThread

    env = {"JACK_DEFAULT_SERVER": jack}
    stats, rec = tmp_path / "stats.jsonl", tmp_path / "rec"
    rx, port = receiver(
        "--output-device", "system", "--record", str(rec), "--stats-json", str(stats), env=env
    )
    proxy = ProxyThread(port, **impairment)
    tx = Micwire(
        "send",
        proxy.url,
        "--name",
        name,
        "--source",
        "tone:440",
        "--duration",
        str(duration_s),
        env=env,
    )
    stream = ProxiedStream(tx, proxy, np.zeros(0), {}, [], XrunWatch.own(jack))
    try:
        yield stream
        rx.wait_for(rf"stream '{name}' from .*: complete")
    finally:
        stream.xruns.close()
        tx.kill()
        rx.signal(signal.SIGINT)
        rx.wait()
        proxy.close()
    data, _, path = read_single(rec, f"{name}-*.wav")
    stream.recording = data[:, 0]
    stream.sidecar = json.loads(path.with_suffix(".json").read_text())
    stream.stats = [json.loads(line) for line in stats.read_text().splitlines()]


@pytest.mark.quiet
def test_live_playback_rides_out_a_stall_and_a_reset(jack: str, tmp_path: Path) -> None:
    """Through the impairment proxy, on a real output device: a 400 ms network stall and
    then a connection reset. Playback conceals and recovers (counted), the sender
    reconnects, and the recording still holds every sample."""
    with tone_through_proxy(jack, tmp_path, "rough", 6) as stream:
        stream.tx.wait_for("sending 'rough'")
        time.sleep(seconds(2))
        stream.proxy.stall(0.4)
        time.sleep(seconds(1.5))
        stream.proxy.cut()
        assert stream.tx.wait(seconds(30)) == 0, stream.tx.log
        assert "1 reconnects" in stream.tx.log and "nothing lost" in stream.tx.log
    assert np.array_equal(stream.recording, expected_tone(6 * RATE))
    assert stream.sidecar["gaps"] == []
    last = stream.stats[-1]
    assert last["underruns"] >= 1 and last["concealed_samples"] > 0  # the stall was heard...
    assert last["underruns"] <= 4  # ...as a dropout or two, not a stutter


@pytest.mark.quiet
def test_the_buffer_grows_to_cover_network_jitter(jack: str, tmp_path: Path) -> None:
    """Through the impairment proxy adding 0..30 ms of random delay to every write: the
    jitter buffer measures it, raises its target to cover it, and plays on with at most
    the few underruns it takes to learn; the recording is untouched."""
    with tone_through_proxy(
        jack, tmp_path, "shaky", 8, delay_s=0.005, jitter_s=0.030, steady_s=0.040
    ) as stream:
        assert stream.tx.wait(seconds(40)) == 0, stream.tx.log
    assert np.array_equal(stream.recording, expected_tone(8 * RATE))
    late = stream.stats[len(stream.stats) // 2 :]
    assert min(x["jitter_ms"] for x in late) >= 15  # it saw the jitter...
    assert min(x["target_ms"] for x in late) >= 20 + 15  # ...and covers it
    # no glitch (an underrun, or audio skipped to catch up) once it had learned, but for a
    # stall of a process on the way: the JACK graph missed its deadline (an xrun), or the
    # sender or the proxy did not run for a while (the packets then come later than the
    # network's delay can make them: measured, a sender silent for 85-95 ms, the proxy
    # forwarding 35-75 ms late, on this 2-core machine under load). The target covers the
    # 95th percentile of transit and remembers each underrun: one packet later than any
    # before may still underrun once, and teaches it, in either half: one such underrun
    # in the second half is allowed whether or not the first half had one (seen in 1 of 5
    # runs of make test: one in each half, no stall the test could see; a listener hears
    # one 10 ms concealment in 4 s of 5-35 ms random delay). More is a hole in the buffer.
    stalls = stream.xruns.times + stream.proxy.stalls
    unexplained = [
        (after["time"], after["underruns"] - before["underruns"])
        for before, after in pairwise(late)
        if stalled(before, after)
        and not any(before["time"] - 0.5 <= t <= after["time"] for t in stalls)
    ]
    assert sum(underruns for _, underruns in unexplained) <= 1, (unexplained, stalls)
    assert all(  # ...and a learning underrun is no stall: nothing was skipped then
        after["skipped_samples"] == before["skipped_samples"]
        for before, after in pairwise(late)
        if stalled(before, after)
        and not any(before["time"] - 0.5 <= t <= after["time"] for t in stalls)
    ), (late, stalls)
    assert late[-1]["late_packets"] == 0  # the rough start may have cut a backlog, not now


GUARD_SCRIPT = """
import json, time, numpy as np
from micwire.common.devices import resolve_device
from micwire.common.devices import sounddevice
from micwire.receiver.mixer import Mixers

mixers = Mixers(resolve_device(sounddevice(), "system", "output"))
broken_voice = mixers.voice("broken", 48000, 1, 20.0)
other = mixers.voice("other", 48000, 1, 20.0)
tone = (np.sin(np.arange(4800) / 10) * 8000).astype(np.int16)[:, None]
position = 0
def feed(seconds):
    global position
    for _ in range(int(seconds * 10)):
        for voice in (broken_voice, other):
            voice.push(position, tone)
        position += len(tone)
        time.sleep(0.1)
feed(0.5)
real_pull, failures = broken_voice.buffer.pull, [0]
def broken(*args):
    if failures[0] < 5:
        failures[0] += 1
        raise RuntimeError("boom")
    return real_pull(*args)
broken_voice.buffer.pull = broken
other_before = other._played
feed(1.0)
other_during = other._played - other_before
played_before = broken_voice._played
feed(0.5)
print(json.dumps({"errors": broken_voice.callback_errors,
                  "last": broken_voice.last_callback_error,
                  "played_on": broken_voice._played - played_before,
                  "other_errors": other.callback_errors,
                  "other_during": other_during}))
"""


BLOCKSIZE_SCRIPT = """
import json
from micwire.sender.sources import DeviceSource
print(json.dumps({ms: DeviceSource("system", 48000, 1, 48 * ms, whole_frames=True).blocksize
                  for ms in (5, 10, 20, 60)}))
"""


def test_opus_frames_come_whole_from_the_card_only_when_they_span_two_periods(
    tmp_path: Path,
) -> None:
    """Frame-sized callbacks (PortAudio gathering a frame from the card's periods) save a
    call into Python per period; a frame shorter than two periods keeps a callback per
    period (several calls into Python within one cycle of the sound server would be more
    work where it can least wait). 256-frame periods: 20 ms frames and up."""
    import sys

    with jack_server(tmp_path, period=256) as jack:  # a USB card at a low-latency setting
        env = {**os.environ, "JACK_DEFAULT_SERVER": jack, "JACK_NO_START_SERVER": "1"}
        done = subprocess.run(
            [sys.executable, "-c", BLOCKSIZE_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"5": 0, "10": 0, "20": 960, "60": 2880}


@pytest.mark.quiet
def test_a_failing_playback_callback_is_counted_and_playback_goes_on(jack: str) -> None:
    """An exception in the PortAudio callback would stop the device's playback for good:
    a voice whose pull fails plays silence there, it is counted, and the next callbacks
    play it again; another stream on the same device's mix never notices."""
    import sys

    env = {**os.environ, "JACK_DEFAULT_SERVER": jack, "JACK_NO_START_SERVER": "1"}
    done = subprocess.run(
        [sys.executable, "-c", GUARD_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == 5 and result["last"] == "RuntimeError: boom"
    assert result["played_on"] >= 0.3 * RATE  # the stream kept running after the failures
    # the other stream on the same device played on through the failures
    assert result["other_errors"] == 0 and result["other_during"] >= 0.9 * RATE, result
