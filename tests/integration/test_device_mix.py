"""One mixer per output device (receiver/mixer.py), through a real JACK card that runs at
44.1 kHz while the senders send 48 kHz: every stream is heard in one client's output, at
its pitch, and the per-stream controls of ``PATCH /api/streams/{name}`` change what is
heard and nothing that is recorded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rig import (
    Micwire,
    Probe,
    jack_pid,
    jack_server,
    read_single,
    receiver,
    seconds,
    wait_until,
)

DEVICE_RATE = 44_100
TONES = {"low": 440, "mid": 660, "high": 1000}
#: What ``--source tone:HZ`` sends: a sine at 0.25 of full scale. A mono stream on a stereo
#: device is panned by the constant-power law: -3 dB on each side at the centre.
CENTRED = 0.25 * np.sqrt(0.5)


def patch(
    port: int, stream: str, body: Any, token: str | None = None, what: str = "streams"
) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{what}/{stream}",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        return error.code, json.loads(text) if text.startswith("{") else text


def streams(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/streams", timeout=10) as answer:
        return {view["stream"]: view for view in json.loads(answer.read())["streams"]}


def levels(probe: Probe, seconds_heard: float = 1.0) -> dict[str, float]:
    """Each tone's amplitude in the next ``seconds_heard`` the probe hears (a flat-top
    window: within 0.01 dB wherever the tone falls between the 1 Hz bins), and the pitch of
    its peak (a Hann window)."""
    start = len(probe.recording())
    wait_until(
        lambda: len(probe.recording()) - start >= seconds_heard * DEVICE_RATE,
        "the probe heard nothing",
    )
    heard = probe.recording()[start : start + int(seconds_heard * DEVICE_RATE)]
    phase = 2 * np.pi * np.arange(len(heard)) / len(heard)
    flat_top = sum(
        a * np.cos(k * phase) * (-1) ** k
        for k, a in enumerate((0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368))
    )
    amplitude = np.abs(np.fft.rfft(heard * flat_top)) * 2 / flat_top.sum()
    pitch = np.abs(np.fft.rfft(heard * np.hanning(len(heard))))
    hz = np.fft.rfftfreq(len(heard), 1 / DEVICE_RATE)
    found = {}
    for name, tone in TONES.items():
        near = (hz > tone - 20) & (hz < tone + 20)
        found[name] = float(np.max(np.where(near, amplitude, 0)))
        found[f"{name}_hz"] = float(hz[np.argmax(np.where(near, pitch, 0))])
    return found


def db(ratio: float) -> float:
    return float(20 * np.log10(max(ratio, 1e-9)))


def test_three_48k_streams_play_as_one_client_on_a_44k_card_and_obey_their_controls(
    tmp_path: Path,
) -> None:
    state, rec = tmp_path / "state", tmp_path / "rec"
    with jack_server(tmp_path, rate=DEVICE_RATE) as jack:
        env = {"JACK_DEFAULT_SERVER": jack}
        rx, port = receiver(
            "--output-device", "system", "--record", str(rec), "--state", str(state), env=env
        )
        senders = [
            Micwire("send", f"ws://127.0.0.1:{port}", "--name", name, "--source", f"tone:{hz}")
            for name, hz in TONES.items()
        ]
        probe = Probe(jack)
        try:
            for name in TONES:
                rx.wait_for(rf"stream '{name}' from")
            # one client of the receiver's: its two ports (a stereo mix), however many play
            outputs = probe.ports(is_input=False)
            assert {port_name.split(":")[0] for port_name in outputs} == {
                outputs[0].split(":")[0]
            }, outputs
            assert len(outputs) == 2, outputs
            probe.client.connect(outputs[0], probe.inp)

            # converted 48 -> 44.1 kHz, each at its pitch once its drift controller has
            # brought its buffer to its target (till then it may play up to 2000 ppm fast or
            # slow: 2 Hz at 1 kHz, 3.5 cents)
            def at_pitch() -> dict[str, float] | None:
                heard = levels(probe)
                return (
                    heard
                    if all(abs(heard[f"{n}_hz"] - hz) <= 1 for n, hz in TONES.items())
                    else None
                )

            before = wait_until(at_pitch, "the tones are not at their pitch", timeout=30)
            for name in TONES:
                assert db(before[name] / CENTRED) == pytest.approx(0, abs=0.5), before

            status, answer = patch(port, "mid", {"mute": True})
            assert (status, answer["mix"]["mute"]) == (200, True), answer
            time.sleep(0.2)
            muted = levels(probe)
            assert db(muted["mid"] / before["mid"]) <= -40, (before, muted)
            for name in ("low", "high"):
                assert db(muted[name] / before[name]) == pytest.approx(0, abs=0.5), muted

            assert patch(port, "high", {"gain_db": -6})[0] == 200
            time.sleep(0.2)
            lower = levels(probe)
            assert db(lower["high"] / before["high"]) == pytest.approx(-6, abs=0.5), lower

            assert patch(port, "low", {"solo": True, "pan": -1})[0] == 200
            time.sleep(0.2)
            solo = levels(probe)  # the left side: a mono stream panned hard left is all there
            assert db(solo["low"] / before["low"]) == pytest.approx(3, abs=0.5), solo
            assert db(solo["high"] / before["high"]) <= -40, solo
            # the device's master: everything on it, after the streams' own settings
            status, answer = patch(port, "system", {"gain_db": -6}, what="outputs")
            assert (status, answer["master"]) == (200, {"gain_db": -6.0}), answer
            time.sleep(0.2)
            master = levels(probe)
            assert db(master["low"] / solo["low"]) == pytest.approx(-6, abs=0.5), master
            assert patch(port, "nowhere", {"gain_db": -6}, what="outputs")[0] == 404
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/streams") as answer:
                (output,) = json.loads(answer.read())["outputs"]
            assert (output["device"], output["rate_hz"], output["streams"]) == ("system", 44100, 3)
            assert output["master"] == {"gain_db": -6.0} and output["peak_dbfs"] > -20, output
            shown = streams(port)
            assert shown["low"]["mix"] == {"gain_db": 0.0, "mute": False, "solo": True, "pan": -1.0}
            assert shown["mid"]["mix"]["mute"] is True
        finally:
            probe.close()
            for tx in senders:
                tx.signal(signal.SIGINT)
            for tx in senders:
                tx.wait(seconds(20))
            rx.signal(signal.SIGINT)
            assert rx.wait(seconds(20)) == 0, rx.log
    # what was heard changed; what was recorded did not: each tone whole, at full level
    for name, hz in TONES.items():
        data, rate, _ = read_single(rec, f"{name}-*.wav")
        assert rate == 48_000
        t = np.arange(len(data)) / rate
        expected = np.rint(np.sin(2 * np.pi * hz * t) * 0.25 * 32767).astype(np.int16)
        assert np.array_equal(data[:, 0], expected), name
    # and the settings outlive the receiver: a new one (on no card) shows them
    rx, port = receiver("--no-play", "--state", str(state))
    try:
        tx = Micwire("send", f"ws://127.0.0.1:{port}", "--name", "mid", "--source", "tone:660")
        rx.wait_for(r"stream 'mid' from")
        assert streams(port)["mid"]["mix"]["mute"] is True
        tx.signal(signal.SIGINT)
        tx.wait(seconds(20))
    finally:
        rx.signal(signal.SIGINT)
        rx.wait(seconds(20))


def test_the_mix_api_says_what_is_wrong_and_who_may(tmp_path: Path) -> None:
    """401 without a token, 403 with a listen token, 404 for a stream not here, 400 naming
    the field for an unknown field or a value out of range; nothing changes then."""
    rx, port = receiver(
        "--no-play", "--token", "f" * 24, "--listen-token", "l" * 24, "--state", str(tmp_path)
    )
    full = "f" * 24
    try:
        tx = Micwire(
            "send",
            f"ws://127.0.0.1:{port}",
            "--name",
            "anna",
            "--source",
            "tone:440",
            "--token",
            full,
        )
        rx.wait_for(r"stream 'anna' from")
        assert patch(port, "anna", {"mute": True})[0] == 401
        assert patch(port, "anna", {"mute": True}, "l" * 24)[0] == 403
        assert patch(port, "bob", {"mute": True}, full)[0] == 404
        status, answer = patch(port, "anna", {"volume": 3}, full)
        assert status == 400 and "volume" in answer["error"], answer
        status, answer = patch(port, "anna", {"gain_db": 20}, full)
        assert status == 400 and "gain_db must be a number from -60 to +12" in answer["error"]
        status, answer = patch(port, "anna", {"pan": 0.5, "mute": "yes"}, full)
        assert status == 400 and "mute must be true or false" in answer["error"], answer
        status, answer = patch(port, "anna", {"pan": 0.5, "x": [[[1]]]}, full)
        assert status == 400 and "x" in answer["error"], answer
        deep = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/streams/anna",
            data=b"[" * 30_000,
            method="PATCH",
            headers={"Authorization": f"Bearer {full}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(deep, timeout=10)
        assert refused.value.code == 400  # (not a 500 with a RecursionError in the log)
        status, answer = patch(port, "anna", {"pan": 0.5}, full)
        assert (status, answer["mix"]["pan"], answer["mix"]["mute"]) == (200, 0.5, False)
        tx.signal(signal.SIGINT)
        tx.wait(seconds(20))
    finally:
        rx.signal(signal.SIGINT)
        rx.wait(seconds(20))
    kept = json.loads((tmp_path / "mix.json").read_text())
    assert kept["streams"] == {"anna": {"gain_db": 0.0, "mute": False, "solo": False, "pan": 0.5}}


def test_a_route_to_none_keeps_a_stream_out_of_the_mix(tmp_path: Path) -> None:
    """``--route 'quiet-*=none'``: that stream is recorded and not played; another stream
    plays on the output device as ever."""
    rec = tmp_path / "rec"
    with jack_server(tmp_path, rate=DEVICE_RATE) as jack:
        env = {"JACK_DEFAULT_SERVER": jack}
        rx, port = receiver(
            "--output-device",
            "system",
            "--route",
            "quiet-*=none",
            "--record",
            str(rec),
            env=env,
        )
        url = f"ws://127.0.0.1:{port}"
        senders = [Micwire("send", url, "--name", "quiet-1", "--source", "tone:1000")]
        probe = Probe(jack)
        try:
            rx.wait_for(r"stream 'quiet-1' from")
            senders.append(Micwire("send", url, "--name", "loud", "--source", "tone:440"))
            rx.wait_for(r"stream 'loud' from")
            probe.client.connect(probe.wait_port(is_input=False, timeout=seconds(10)), probe.inp)

            def loud_heard() -> dict[str, float] | None:
                heard = levels(probe)
                return heard if heard["low"] > 0.5 * CENTRED else None

            heard = wait_until(loud_heard, "the stream on the output device is not heard")
            assert db(heard["high"] / CENTRED) <= -40, heard  # quiet-1: not in the mix
        finally:
            probe.close()
            for tx in senders:
                tx.signal(signal.SIGINT)
            for tx in senders:
                tx.wait(seconds(20))
            rx.signal(signal.SIGINT)
            assert rx.wait(seconds(20)) == 0, rx.log
    data, _, _ = read_single(rec, "quiet-1-*.wav")
    assert len(data) > 0  # recorded all the same


def test_a_route_to_a_device_that_is_not_there_is_one_line_at_start(tmp_path: Path) -> None:
    with jack_server(tmp_path) as jack:
        rx = Micwire(
            "receive",
            "--port",
            "0",
            "--output-device",
            "system",
            "--route",
            "guest-*=USB Headset",
            env={"JACK_DEFAULT_SERVER": jack},
        )
        assert rx.wait(seconds(20)) == 1, rx.log
    assert len(rx.lines) == 1 and "--route guest-*=USB Headset: " in rx.lines[0], rx.log
    assert "micwire devices" in rx.lines[0] and "Traceback" not in rx.log


def output_state(port: int, stream: str) -> tuple[str | None, str | None]:
    view = streams(port).get(stream, {})
    return view.get("output_device"), view.get("output_state")


def test_a_device_that_stalls_or_goes_is_shown_and_the_recording_goes_on(
    tmp_path: Path,
) -> None:
    """The sound server stalls (SIGSTOP): the stream's row says its device is stalled,
    and playing again once it is back. The server dies: the row says the device is gone
    (it is tried again every few seconds), and the recording is complete all the same."""
    rec = tmp_path / "rec"
    with jack_server(tmp_path) as jack:
        rx, port = receiver(
            "--output-device", "system", "--record", str(rec), env={"JACK_DEFAULT_SERVER": jack}
        )
        tx = Micwire("send", f"ws://127.0.0.1:{port}", "--name", "kit", "--source", "tone:440")
        jackd = jack_pid(jack)
        try:
            rx.wait_for(r"stream 'kit' from")
            wait_until(lambda: output_state(port, "kit") == ("system", "playing"), "not playing")
            os.kill(jackd, signal.SIGSTOP)
            rx.wait_for(r"output device 'system' has not asked for audio")
            assert output_state(port, "kit") == ("system", "stalled")
            os.kill(jackd, signal.SIGCONT)
            rx.wait_for(r"output device 'system' plays again")
            assert output_state(port, "kit") == ("system", "playing")
            os.kill(jackd, signal.SIGTERM)
            rx.wait_for(r"output device 'system' stopped; the streams on it are recorded")
            assert output_state(port, "kit") == ("system", "gone")
            # (a JACK server is not tried again by this process: PortAudio cannot find it)
            assert "restart it to play again" in rx.log
            tx.signal(signal.SIGINT)
            assert tx.wait(seconds(20)) == 0, tx.log
            rx.wait_for(r"stream 'kit' from .*: complete")
            rx.signal(signal.SIGINT)
            assert rx.wait(seconds(20)) == 0, rx.log
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(jackd, signal.SIGCONT)
            tx.kill()
            rx.kill()
    (sidecar,) = (json.loads(p.read_text()) for p in rec.glob("kit-*.json"))
    assert sidecar["outcome"] == "complete" and sidecar["gaps"] == [], sidecar
