"""A microphone that runs only at 44.1 kHz (a JACK card at 44.1 kHz: PortAudio opens it at
no other rate): ``micwire send`` captures at the card's rate and sends PCM at it, Opus
resampled to 48 kHz, PCM at ``--rate`` converted; the recording is at the rate sent, the
tone at its pitch, as long as it was played, and ``--duration`` and the sender's summary
count samples of the rate sent."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import numpy as np
import pytest
from rig import Micwire, Probe, jack_server, read_single, receiver, seconds

DEVICE_RATE = 44_100
TONE_HZ = 1000.0
TONE_S = 1.0
DURATION_S = 3.0
FRAME_MS = 20.0


def pitch_hz(tone: np.ndarray, rate: int) -> float:
    """The frequency of the strongest peak (a Hann window, zero-padded to 0.1 Hz bins)."""
    spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone)), n=10 * rate))
    return float(np.argmax(spectrum) * rate / (10 * rate))


def send_a_tone(tmp_path: Path, name: str, *options: str) -> tuple[np.ndarray, int, str]:
    """A 44.1 kHz JACK card; a sender capturing from it for ``DURATION_S`` into a receiver
    that only records; the probe plays a ``TONE_S`` tone into the sender's input port once
    the sender sends. The recording, its rate, and the sender's log."""
    rec = tmp_path / "rec"
    with jack_server(tmp_path, rate=DEVICE_RATE) as jack:
        rx, port = receiver("--no-play", "--record", str(rec))
        probe = Probe(jack)
        tx = Micwire(
            "send", f"ws://127.0.0.1:{port}", "--name", name, "--device", "system",
            "--duration", str(DURATION_S), "--frame-ms", str(FRAME_MS), *options,
            env={"JACK_DEFAULT_SERVER": jack},
        )  # fmt: skip
        try:
            try:
                sender_port = probe.wait_port(is_input=True, timeout=seconds(10))
            except TimeoutError:
                raise AssertionError(f"the sender opened no device:\n{tx.log}") from None
            probe.client.connect(probe.out, sender_port)
            # the port is there from Pa_OpenStream on, but carries audio once the stream runs
            tx.wait_for(rf"sending '{name}' from device")
            t = np.arange(int(TONE_S * DEVICE_RATE)) / DEVICE_RATE
            probe.play(0.5 * np.sin(2 * np.pi * TONE_HZ * t))
            assert tx.wait(seconds(20)) == 0, tx.log
            rx.wait_for(rf"stream '{name}' from .*: complete")
        finally:
            tx.kill()
            probe.close()
            rx.signal(signal.SIGINT)
            assert rx.wait() == 0, rx.log
    data, rate, _ = read_single(rec, f"{name}-*.wav")
    return data[:, 0], rate, tx.log


def assert_tone_recorded(recording: np.ndarray, rate: int, tx_log: str) -> None:
    """The whole capture is recorded, as the sender counted it; the tone in it lasts as
    long as it was played (within a frame) and is at its pitch (within 1 Hz)."""
    captured = re.search(r"([\d.]+) s of audio \((\d+) samples\)", tx_log)
    assert captured, tx_log
    assert int(captured.group(2)) == round(DURATION_S * rate) == len(recording), tx_log
    assert float(captured.group(1)) == DURATION_S, tx_log
    loud = np.flatnonzero(np.abs(recording) > 0.25 * 32768)
    assert len(loud), "no tone in the recording"
    tone = recording[loud[0] : loud[-1] + 1].astype(float)
    if "LOST audio" not in tx_log:  # (a stall of this VM: the card lost input, and said so)
        assert abs(len(tone) - TONE_S * rate) <= FRAME_MS / 1000 * rate, (len(tone), rate)
    middle = tone[len(tone) // 4 : -len(tone) // 4]
    assert pitch_hz(middle, rate) == pytest.approx(TONE_HZ, abs=1.0)


def test_pcm_is_sent_at_the_rate_of_a_44k1_card(tmp_path: Path) -> None:
    recording, rate, log = send_a_tone(tmp_path, "pcm44", "--codec", "pcm")
    assert (
        "capturing at 44100 Hz (the device's rate: it does not take 48000 Hz); "
        "sending PCM at 44100 Hz" in log
    ), log
    assert rate == DEVICE_RATE
    assert_tone_recorded(recording, rate, log)


def test_opus_from_a_44k1_card_is_resampled_to_48k(tmp_path: Path) -> None:
    recording, rate, log = send_a_tone(tmp_path, "opus44", "--codec", "opus", "--bitrate", "128000")
    assert (
        "capturing at 44100 Hz (the device's rate: it does not take 48000 Hz); "
        "resampled to 48000 Hz for Opus" in log
    ), log
    assert rate == 48_000
    assert_tone_recorded(recording, rate, log)


def test_pcm_at_the_rate_asked_for_is_converted_from_a_44k1_card(tmp_path: Path) -> None:
    recording, rate, log = send_a_tone(tmp_path, "pcm48", "--codec", "pcm", "--rate", "48000")
    assert "resampled to 48000 Hz for PCM" in log, log
    assert rate == 48_000
    assert_tone_recorded(recording, rate, log)
