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
        assert tx.wait() == 1 and "lost the connection to the receiver" in tx.log
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


@pytest.mark.parametrize(
    ("codec", "formats"), [("pcm", "wav"), ("opus", "wav"), ("pcm", "wav,mp3,flac")]
)
def test_receiver_killed_and_restarted_the_parts_hold_every_sample(
    tmp_path: Path, codec: str, formats: str
) -> None:
    """Kill -9 the receiver mid-stream and start it again: the sender reconnects with the
    stream's resume secret, the new receiver finds the first part (its sidecar and WAV),
    and the sender sends from where that part ends, with a fresh encoder. PCM: part 1 +
    part 2 equal the source sample for sample. Opus: exactly as long, in place all along,
    no burst at the seam."""
    import numpy as np

    rec = tmp_path / "rec"
    if codec == "pcm":
        source = np.random.default_rng(2).integers(-20000, 20000, 6 * 48000 + 7, dtype=np.int16)
    else:
        t = np.arange(6 * 48000 + 7) / 48000
        source = np.rint(np.sin(2 * np.pi * (150 + 900 * t) * t) * 12000).astype(np.int16)
    sf.write(str(tmp_path / "src.wav"), source, 48000, subtype="PCM_16")
    rx, port = receiver("--record", str(rec), "--no-play", "--format", formats)
    tx = Micwire(
        "send",
        f"ws://127.0.0.1:{port}",
        "--source",
        f"file:{tmp_path / 'src.wav'}",
        "--name",
        "phoenix",
        "--codec",
        codec,
        "--bitrate",
        "96000",
    )
    rx2 = None
    try:
        rx.wait_for("stream 'phoenix' from")
        time.sleep(seconds(2.5))
        rx.proc.send_signal(signal.SIGKILL)
        rx.wait()
        rx2 = Micwire(
            "receive",
            *("--host", "127.0.0.1", "--port", str(port), "--record", str(rec), "--no-play"),
            *("--format", formats),
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
    # the first part's entry was brought up to date from its file when it was continued
    assert parts[0]["samples"] == len(audio[0]) == parts[1]["origin"]
    assert parts[0]["outcome"] == "interrupted (the receiver stopped)"
    assert sidecar["samples"] == len(source) and sidecar["outcome"] == "complete"
    joined = np.concatenate(audio)
    if codec == "pcm":
        assert np.array_equal(joined, source)
        # every format: each part's files hold at least its `samples` (a FLAC or MP3 file
        # may hold a little more after a crash), and those joined are the source
        for ext in formats.split(",")[1:]:
            pieces = []
            for part in parts:
                name = next(f for f in part["files"] if f.endswith(ext))
                # a FLAC cut by SIGKILL does not know its length: read what the part holds
                data = sf.read(str(rec / name), frames=part["samples"], dtype="int16")[0]
                assert len(data) == part["samples"], (ext, len(data), part["samples"])
                pieces.append(data)
            whole = np.concatenate(pieces)
            assert len(whole) == len(source), ext
            if ext == "flac":
                assert np.array_equal(whole, source)
            else:  # MP3: the same audio, in place to the sample
                lags = range(-20, 21)
                scores = [
                    float(
                        np.dot(
                            whole[24000 + k : -24000 + k].astype(float),
                            source[24000:-24000].astype(float),
                        )
                    )
                    for k in lags
                ]
                assert lags[int(np.argmax(scores))] == 0, ext
    else:
        assert len(joined) == len(source)
        got, want = joined.astype(float), source.astype(float)
        for start in range(0, len(want) - 4800, 4800):
            window = slice(start, start + 4800)
            assert np.corrcoef(got[window], want[window])[0, 1] > 0.95, start / 48000
        assert np.max(np.abs(got)) < 1.3 * np.max(np.abs(want))
