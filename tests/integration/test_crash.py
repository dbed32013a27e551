"""Fault injection on real processes: SIGKILL the receiver or the sender mid-stream."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import soundfile as sf
from rig import Micwire, read_single, receiver, seconds


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_receiver_killed_with_sigkill_leaves_a_playable_file(tmp_path: Path, fmt: str) -> None:
    rx, port = receiver("--record", str(tmp_path), "--format", fmt, "--no-play")
    tx = Micwire(
        "send", f"ws://127.0.0.1:{port}", "--source", "tone:440", "--name", "k9", "--no-reconnect"
    )
    try:
        rx.wait_for("stream 'k9' from")
        started = time.monotonic()
        time.sleep(seconds(3))
        rx.proc.send_signal(signal.SIGKILL)
        streamed_s = time.monotonic() - started
        rx.wait()
        assert tx.wait() == 1 and "receiver closed the connection" in tx.log
    finally:
        tx.kill()
        rx.kill()
    data, rate, path = read_single(tmp_path, f"k9-*.{fmt}")  # a player opens it
    assert rate == 48000
    assert len(data) >= (streamed_s - 1.0 - 0.3) * rate, (len(data) / rate, streamed_s)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["outcome"] == "recording"  # it never got to say it finished


def test_sender_killed_with_sigkill_the_receiver_finalises(tmp_path: Path) -> None:
    rx, port = receiver("--record", str(tmp_path), "--format", "wav,mp3", "--no-play")
    tx = Micwire("send", f"ws://127.0.0.1:{port}", "--source", "tone:440", "--name", "gone")
    try:
        rx.wait_for("stream 'gone' from")
        time.sleep(seconds(1.5))
        tx.proc.send_signal(signal.SIGKILL)
        tx.wait()
        # the receiver holds the stream open for the sender to come back, then is stopped
        rx.wait_for("stream 'gone': connection lost .* keeping it open")
    finally:
        rx.signal(signal.SIGTERM)
        assert rx.wait() == 0
    data, _, path = read_single(tmp_path, "gone-*.wav")
    assert len(data) > 48000
    info = sf.info(str(next(tmp_path.glob("gone-*.mp3"))))
    assert abs(info.frames - len(data)) <= 1152
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["outcome"].startswith("connection lost")
    assert sidecar["samples"] == len(data)


def test_receiver_killed_and_restarted_the_parts_hold_every_sample(tmp_path: Path) -> None:
    """Kill -9 the receiver mid-stream and start it again: the sender reconnects, the new
    receiver finds the first part (its sidecar and WAV), and the sender resends what it
    lacks. Part 1 + part 2 equal the source sample for sample."""
    import numpy as np

    rec = tmp_path / "rec"
    source = np.random.default_rng(2).integers(-20000, 20000, 6 * 48000 + 7, dtype=np.int16)
    sf.write(str(tmp_path / "src.wav"), source, 48000, subtype="PCM_16")
    rx, port = receiver("--record", str(rec), "--no-play")
    tx = Micwire(
        "send",
        f"ws://127.0.0.1:{port}",
        "--source",
        f"file:{tmp_path / 'src.wav'}",
        "--name",
        "phoenix",
    )
    rx2 = None
    try:
        rx.wait_for("stream 'phoenix' from")
        time.sleep(seconds(2.5))
        rx.proc.send_signal(signal.SIGKILL)
        rx.wait()
        rx2 = Micwire(
            "receive", "--host", "127.0.0.1", "--port", str(port), "--record", str(rec), "--no-play"
        )
        rx2.wait_for("continuing phoenix-.* from sample")
        assert tx.wait(seconds(30)) == 0, tx.log
        assert "1 reconnects" in tx.log and "nothing lost" in tx.log
        rx2.wait_for("stream 'phoenix' from .*: complete")
    finally:
        tx.kill()
        rx.kill()
        if rx2 is not None:
            rx2.signal(signal.SIGINT)
            rx2.wait()
    sidecar_path = next(rec.glob("phoenix-*.json"))
    sidecar = json.loads(sidecar_path.read_text())
    parts = sidecar["parts"]
    assert len(parts) == 2 and parts[1]["outcome"] == "complete"
    audio = [sf.read(str(rec / part["files"][0]), dtype="int16")[0] for part in parts]
    assert parts[1]["origin"] == len(audio[0])
    assert np.array_equal(np.concatenate(audio), source)
