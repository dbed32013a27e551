"""``micwire receive --workers N``: several processes serve one port, and to senders,
pages and scripts they are one receiver. Each stream lives in the worker its name hashes
to (the supervisor hands every connection to its owner), so a sender that reconnects
finds its stream where it left it; a worker that dies loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf
from proxy import ProxyThread
from rig import RATE, Micwire, expected_tone, receiver, seconds

from micwire.common.routing import owner


def names_on(worker: int, count: int, prefix: str, workers: int = 2) -> list[str]:
    """``count`` stream names that worker ``worker`` owns."""
    found = (f"{prefix}-{i}" for i in range(1000))
    return [name for name in found if owner(name, workers) == worker][:count]


def get_json(port: int, path: str) -> tuple[int, Any]:
    """The answer to ``path``, and which worker gave it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return int(response.headers["X-Micwire-Worker"]), json.loads(response.read())


def each_worker(port: int, path: str, workers: int = 2) -> dict[int, Any]:
    """``path`` as answered by each worker (requests without a stream name go to the
    workers in turn)."""
    answers: dict[int, Any] = {}
    for _ in range(4 * workers):
        worker, answer = get_json(port, path)
        answers[worker] = answer
        if len(answers) == workers:
            return answers
    raise AssertionError(f"not every worker answered: {answers}")


async def listen_once(port: int, name: str) -> int:
    """Bytes of the first audio message a listener gets."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/api/listen/{name}?format=pcm") as ws,
    ):
        while True:
            message = await ws.receive(timeout=seconds(5))
            if message.type is aiohttp.WSMsgType.BINARY:
                return len(message.data)
            assert message.type is aiohttp.WSMsgType.TEXT, message


def tone_sender(url: str, name: str, duration_s: int, *args: str) -> Micwire:
    """``micwire send`` of a 440 Hz tone (exactly ``expected_tone``) for ``duration_s``."""
    return Micwire(
        "send", url, "--name", name, "--source", "tone:440", "--duration", str(duration_s), *args
    )


def wait_count(process: Micwire, text: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + seconds(timeout)
    while process.log.count(text) < count:
        assert time.monotonic() < deadline, f"{count} x {text!r} expected; log:\n{process.log}"
        time.sleep(0.05)


def joined_parts(directory: Path, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """A stream's audio over all its parts (in order), and its sidecar."""
    sidecars = list(directory.glob(f"{name}-*.json"))
    assert len(sidecars) == 1, sidecars
    sidecar = json.loads(sidecars[0].read_text())
    audio = [
        sf.read(str(directory / part["files"][0]), dtype="int16")[0] for part in sidecar["parts"]
    ]
    for part, data in zip(sidecar["parts"], audio, strict=True):
        assert part["samples"] == len(data), part
    return np.concatenate(audio), sidecar


def worker_of(port: int) -> int:
    """The pid of the process holding the one established connection on ``port``."""
    held = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (pid,) = {int(pid) for pid in re.findall(r"pid=(\d+)", held)}
    return pid


def test_streams_spread_over_workers_are_whole_and_shown_as_one_receiver(
    tmp_path: Path,
) -> None:
    """Six senders (three names per worker) into two workers: every recording is the tone
    sample for sample, and whichever worker answers, the page's list, /metrics and
    --stats-json show all six; a listener reaches each stream's worker."""
    rec, stats = tmp_path / "rec", tmp_path / "stats.jsonl"
    rx, port = receiver(
        "--workers", "2", "--record", str(rec), "--no-play", "--stats-json", str(stats)
    )
    names = sorted(names_on(0, 3, "room") + names_on(1, 3, "room"))
    senders = [tone_sender(f"ws://127.0.0.1:{port}", name, 4) for name in names]
    try:
        for name, tx in zip(names, senders, strict=True):
            try:
                rx.wait_for(f"stream '{name}' from")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- sender {name}:\n{tx.log}") from None
        health = each_worker(port, "/healthz")
        assert [health[w]["live"] for w in (0, 1)] == [3, 3], health  # by their names
        for listed in each_worker(port, "/api/streams").values():  # each answers for both
            streams = listed["streams"]
            assert [s["stream"] for s in streams] == names  # in name order
            assert {s["state"] for s in streams} == {"live"}
        for name in (names_on(0, 1, "room")[0], names_on(1, 1, "room")[0]):
            assert asyncio.run(listen_once(port, name)) > 0
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        text = metrics.decode()
        assert 'micwire_streams{state="live"} 6.0' in text, text
        for name in names:
            assert f'micwire_packets_total{{stream="{name}"}}' in text
        for tx in senders:
            assert tx.wait(seconds(30)) == 0, tx.log
            assert "nothing lost" in tx.log
        for name in names:
            rx.wait_for(f"stream '{name}' from .*: complete")
    finally:
        for tx in senders:
            tx.kill()
        rx.signal(signal.SIGINT)
        assert rx.wait(seconds(30)) == 0, rx.log
    for name in names:
        audio, sidecar = joined_parts(rec, name)
        assert sidecar["outcome"] == "complete" and len(sidecar["parts"]) == 1
        assert np.array_equal(audio, expected_tone(4 * RATE))
    seen = {json.loads(line)["stream"] for line in stats.read_text().splitlines()}
    assert seen == set(names)
    assert "2 workers" in rx.log


def test_a_sender_that_reconnects_finds_its_stream_where_it_left_it(tmp_path: Path) -> None:
    """Three cuts: each time the sender comes back to the same worker (its stream's), which
    continues the same file: one part, the tone sample for sample, its counters only going
    up, no "down" alert, listed once, complete."""
    rec, stats = tmp_path / "rec", tmp_path / "stats.jsonl"
    rx, port = receiver(
        *("--workers", "2", "--record", str(rec), "--no-play", "--stats-json", str(stats)),
        *("--down-s", "1"),
    )
    proxy = ProxyThread(port)
    tx = tone_sender(proxy.url, "roamer", 7)
    try:
        rx.wait_for("stream 'roamer' from")
        for cuts in (1, 2, 3):
            rx.wait_for("stream 'roamer': recording to")
            wait_count(rx, "is back; resuming at sample", cuts - 1)
            time.sleep(seconds(1.0))  # (audio flows a while between cuts)
            proxy.cut()
            wait_count(rx, "is back; resuming at sample", cuts)
        assert tx.wait(seconds(30)) == 0, tx.log
        assert "3 reconnects" in tx.log and "nothing lost" in tx.log, tx.log
        rx.wait_for(r"stream 'roamer' from .*: complete; 7\.00 s")
        for listed in each_worker(port, "/api/streams").values():
            assert [(s["stream"], s["outcome"], s["reconnects"]) for s in listed["streams"]] == [
                ("roamer", "complete", 3)
            ], listed
    finally:
        tx.kill()
        proxy.close()
        rx.signal(signal.SIGINT)
        assert rx.wait(seconds(30)) == 0, rx.log
    assert "alert down raised" not in rx.log, rx.log
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    packets = [line["packets"] for line in lines if line["stream"] == "roamer"]
    assert packets == sorted(packets) and packets[-1] >= 250, packets  # 350 sent
    audio, sidecar = joined_parts(rec, "roamer")
    assert [p["outcome"] for p in sidecar["parts"]] == ["complete"]
    assert np.array_equal(audio, expected_tone(7 * RATE))


def test_a_worker_killed_mid_stream_is_started_again_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """kill -9 of the stream's worker: the supervisor starts it again, the sender
    reconnects to it, and the stream continues from the sidecar the dead worker left."""
    rec = tmp_path / "rec"
    rx, port = receiver("--workers", "2", "--record", str(rec), "--no-play")
    tx = tone_sender(f"ws://127.0.0.1:{port}", "survivor", 6)
    try:
        rx.wait_for("stream 'survivor': recording to")
        time.sleep(seconds(1.5))  # (a second of audio in the first part)
        os.kill(worker_of(port), signal.SIGKILL)
        rx.wait_for("worker \\d died .*starting it again")
        rx.wait_for("continuing survivor-.* from sample")
        assert tx.wait(seconds(30)) == 0, tx.log
        assert "nothing lost" in tx.log, tx.log
        rx.wait_for("stream 'survivor' from .*: complete")
        assert len(children(rx.proc.pid)) == 2
    finally:
        tx.kill()
        rx.signal(signal.SIGINT)
        assert rx.wait(seconds(30)) == 0, rx.log
    audio, sidecar = joined_parts(rec, "survivor")
    assert len(sidecar["parts"]) == 2 and sidecar["outcome"] == "complete"
    assert sidecar["parts"][0]["outcome"] == "interrupted (the receiver stopped)"
    assert np.array_equal(audio, expected_tone(6 * RATE))


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """kill -9 of the supervisor leaves no orphans: the workers finalise their streams and
    exit, and a new receiver can start on the same port."""
    rec = tmp_path / "rec"
    rx, port = receiver("--workers", "2", "--record", str(rec), "--no-play")
    tx = tone_sender(f"ws://127.0.0.1:{port}", "orphan", 30)
    try:
        rx.wait_for("stream 'orphan': recording to")
        workers = children(rx.proc.pid)
        assert len(workers) == 2
        rx.proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + seconds(15)
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < deadline, "workers still running without a supervisor"
            time.sleep(0.1)
        rx2 = Micwire(
            "receive", "--host", "127.0.0.1", "--port", str(port), "--record", str(rec),
            "--no-play",
        )  # fmt: skip
        try:
            rx2.wait_for(r"listening on ws://127\.0\.0\.1:")
            rx2.wait_for("continuing orphan-.* from sample")  # the sender resumes there
        finally:
            rx2.signal(signal.SIGINT)
            rx2.wait(seconds(30))
    finally:
        tx.kill()
        rx.kill()
    sidecar = json.loads(next(rec.glob("orphan-*.json")).read_text())
    assert "the receiver stopped" in sidecar["parts"][0]["outcome"], sidecar
    assert sidecar["parts"][0]["samples"] > 0


def test_a_receiver_with_workers_starts_again_at_once_on_its_port(tmp_path: Path) -> None:
    """A stream that ended normally leaves its connection in TIME_WAIT on the receiver's
    port for a minute: a restart (systemd's Restart=, an operator's Ctrl-C and up-arrow)
    must not take that for another receiver."""
    rx, port = receiver("--workers", "2", "--record", str(tmp_path), "--no-play")
    tx = tone_sender(f"ws://127.0.0.1:{port}", "brief", 1)
    try:
        assert tx.wait(seconds(20)) == 0, tx.log
    finally:
        tx.kill()
        rx.signal(signal.SIGINT)
        rx.wait(seconds(30))
    again = Micwire(
        "receive", "--host", "127.0.0.1", "--port", str(port), "--no-play", "--workers", "2"
    )
    try:
        again.wait_for(rf"listening on ws://127\.0\.0\.1:{port} \(2 workers\)")
    finally:
        again.signal(signal.SIGINT)
        again.wait(seconds(30))


def test_a_sender_back_as_its_frozen_worker_ends_the_stream_finds_it_complete(
    tmp_path: Path,
) -> None:
    """The stream's worker freezes just before the sender's last packet; the sender, hearing
    nothing, reconnects, and its new connection waits for the same worker. When it thaws it
    reads the last packet, finalises, and confirms to the sender's new connection: the
    stream ends once, complete, one part in each format, nothing cut or doubled."""
    rec = tmp_path / "rec"
    rx, port = receiver("--workers", "2", "--record", str(rec), "--format", "wav,mp3", "--no-play")
    tx = tone_sender(f"ws://127.0.0.1:{port}", "late", 3, "--finish-timeout", "30")
    try:
        tx.wait_for("sending 'late'")
        worker = worker_of(port)
        time.sleep(seconds(2.3))
        os.kill(worker, signal.SIGSTOP)  # past the sender's 6 s without a word
        tx.wait_for("the link is dead", timeout=15)
        os.kill(worker, signal.SIGCONT)
        assert tx.wait(seconds(30)) == 0, tx.log
        assert "nothing lost" in tx.lines[-1] and "1 reconnects" in tx.lines[-1], tx.log
    finally:
        tx.kill()
        rx.signal(signal.SIGINT)
        assert rx.wait(seconds(30)) == 0, rx.log
    (sidecar_path,) = rec.glob("late-*.json")
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["outcome"] == "complete"
    assert [(p["outcome"], p["samples"]) for p in sidecar["parts"]] == [("complete", 3 * RATE)]
    wav, mp3 = sidecar["parts"][0]["files"]
    assert np.array_equal(sf.read(str(rec / wav), dtype="int16")[0], expected_tone(3 * RATE))
    assert sf.info(str(rec / mp3)).frames == 3 * RATE


def test_a_sender_on_a_path_without_its_name_is_told_how_to_connect(tmp_path: Path) -> None:
    """A sender of the protocol that connects to ``/`` reaches whichever worker is next: the
    stream's own worker takes it; another says to connect to /stream/<name>."""
    from websockets.asyncio.client import connect

    from micwire.common.protocol import Hello, StreamParams

    rx, port = receiver("--workers", "2", "--no-play")

    async def hello_on_root() -> str:
        now = int(time.time() * 1e6)
        hello = Hello("lost", StreamParams(), now, now, stream_id="x")
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send(hello.serialize())
            reply = json.loads(await ws.recv())
            return str(reply["type"]) + ": " + str(reply.get("reason", ""))

    try:
        answers = [asyncio.run(hello_on_root()) for _ in range(2)]  # the workers in turn
    finally:
        rx.signal(signal.SIGINT)
        rx.wait(seconds(30))
    assert sorted(a.split(":")[0] for a in answers) == ["accept", "refuse"], answers
    assert any("connects to /stream/<name>" in a for a in answers), answers


def test_max_streams_counts_every_worker(tmp_path: Path) -> None:
    """--max-streams 2 with two workers: two streams on one worker fill the receiver, and a
    third on the other worker is told it is full, then gets in when one ends."""
    rx, port = receiver("--workers", "2", "--no-play", "--max-streams", "2")
    first, second = names_on(0, 2, "busy")
    (third,) = names_on(1, 1, "busy")
    url = f"ws://127.0.0.1:{port}"
    long = [tone_sender(url, first, 30), tone_sender(url, second, 4)]
    tx = None
    try:
        for name in (first, second):
            rx.wait_for(f"stream '{name}' from")
        # (its second of audio waits for the slot: longer than the default 5 s, under load)
        tx = tone_sender(url, third, 1, "--finish-timeout", "30")
        tx.wait_for(r"receiver is full \(2 streams\)")
        assert long[1].wait(seconds(20)) == 0, long[1].log
        assert tx.wait(seconds(30)) == 0, tx.log
        assert "nothing lost" in tx.log, tx.log
    finally:
        for process in [*long, *([tx] if tx else [])]:
            process.kill()
        rx.signal(signal.SIGINT)
        rx.wait(seconds(30))
