"""``micwire receive --workers N``: several processes serve one port, and to senders,
pages and scripts they are one receiver. A stream stays whole wherever its sender
reconnects, and a worker that dies loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
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


def ask_worker(port: int, source_port: int, path: str = "/healthz") -> dict[str, Any]:
    """GET ``path`` from a chosen local port: SO_REUSEPORT picks the worker by the
    connection's addresses, so a local port always reaches the same worker."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=5, source_address=("127.0.0.1", source_port)
    ) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):  # to the end: the server closes first, so this
            data += chunk  # side leaves no TIME_WAIT and the port can connect again
    result: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return result


#: Local ports to connect from, a range for each test process (pytest-xdist runs several
#: at once, and two tests picking one port would take each other's connections), below
#: Linux's ephemeral ports (32768-60999) so that no other connection takes one meanwhile.
_FIRST_PORT = 20000 + 1000 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
SOURCE_PORTS = range(_FIRST_PORT, _FIRST_PORT + 1000)


def ports_by_worker(port: int, each: int) -> list[list[int]]:
    """``each`` local ports that reach worker 0, and as many that reach worker 1."""
    found: list[list[int]] = [[], []]
    for source_port in SOURCE_PORTS:
        try:
            worker = ask_worker(port, source_port)["worker"]
        except OSError:
            continue  # in use
        if len(found[worker]) < each:
            found[worker].append(source_port)
        if all(len(ports) == each for ports in found):
            return found
    raise AssertionError(f"the kernel sent nearly every connection to one worker: {found}")


async def listen_once(port: int, source_port: int, name: str) -> int:
    """Bytes of the first audio message a listener gets, connecting from ``source_port``."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.1", source_port), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/api/listen/{name}?format=pcm") as ws,
    ):
        while True:
            message = await ws.receive(timeout=seconds(5))
            if message.type is aiohttp.WSMsgType.BINARY:
                return len(message.data)
            assert message.type is aiohttp.WSMsgType.TEXT, message


def tone_sender(url: str, name: str, duration_s: int) -> Micwire:
    """``micwire send`` of a 440 Hz tone (exactly ``expected_tone``) for ``duration_s``."""
    return Micwire(
        "send", url, "--name", name, "--source", "tone:440", "--duration", str(duration_s)
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


def test_streams_spread_over_workers_are_whole_and_shown_as_one_receiver(
    tmp_path: Path,
) -> None:
    """Six senders into two workers: every recording is the tone sample for sample, and
    whichever worker answers, the page's list, /metrics and --stats-json show all six."""
    rec, stats = tmp_path / "rec", tmp_path / "stats.jsonl"
    rx, port = receiver(
        "--workers", "2", "--record", str(rec), "--no-play", "--stats-json", str(stats)
    )
    names = [f"room-{i}" for i in range(6)]
    senders = [tone_sender(f"ws://127.0.0.1:{port}", name, 4) for name in names]
    try:
        for name, tx in zip(names, senders, strict=True):
            try:
                rx.wait_for(f"stream '{name}' from")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- sender {name}:\n{tx.log}") from None
        per_worker = ports_by_worker(port, 1)
        live_per_worker = [ask_worker(port, ports[0])["live"] for ports in per_worker]
        assert sum(live_per_worker) == 6, live_per_worker
        for ports in per_worker:  # each worker answers for both
            listed = ask_worker(port, ports[0], "/api/streams")["streams"]
            assert [s["stream"] for s in listed] == sorted(names)  # in name order
            assert {s["state"] for s in listed} == {"live"}
        for ports in per_worker:  # a listener hears the stream whichever worker it reaches
            assert asyncio.run(listen_once(port, ports[0], "room-0")) > 0
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


def test_a_sender_that_reconnects_to_the_other_worker_resumes_gap_free(tmp_path: Path) -> None:
    """Each reconnect lands on the other worker (chosen by the proxy's local port): the
    worker that held the stream finalises its part and lets go, the other continues from
    the sidecar, and the parts joined are the tone sample for sample. To the views it
    stays one stream: its counters only go up, no "down" alert for the parts it left
    behind, and once ended it is listed once, complete."""
    rec, stats = tmp_path / "rec", tmp_path / "stats.jsonl"
    rx, port = receiver(
        *("--workers", "2", "--record", str(rec), "--no-play", "--stats-json", str(stats)),
        *("--down-s", "1"),
    )
    per_worker = ports_by_worker(port, 3)
    alternating = [per_worker[i % 2][i // 2] for i in range(6)]
    proxy = ProxyThread(port, source_ports=alternating)
    tx = tone_sender(proxy.url, "roamer", 7)
    witness_proxies: list[ProxyThread] = []
    witnesses: list[Micwire] = []
    try:
        rx.wait_for("stream 'roamer' from")
        for moves in (1, 2, 3):
            time.sleep(seconds(1.0))
            proxy.cut()
            wait_count(rx, "continuing roamer-", moves)
        assert tx.wait(seconds(30)) == 0, tx.log
        assert "3 reconnects" in tx.log and "nothing lost" in tx.log, tx.log
        # the whole stream's length: the parts on the other workers counted once
        rx.wait_for(r"stream 'roamer' from .*: complete; .*\(with its earlier parts: 7\.00 s\)")
        for ports in ports_by_worker(port, 1):  # (the proxy's ports are taken)
            listed = ask_worker(port, ports[0], "/api/streams")["streams"]
            assert [(s["stream"], s["outcome"], s["reconnects"]) for s in listed] == [
                ("roamer", "complete", 3)
            ], listed
        # a sender on each worker that vanishes: its "down" alert says that worker checked
        # its streams a whole --down-s after the roamer's parts were left behind
        for i, ports in enumerate(ports_by_worker(port, 1)):
            witness_proxies.append(ProxyThread(port, source_ports=ports))
            witnesses.append(tone_sender(witness_proxies[-1].url, f"witness-{i}", 30))
            rx.wait_for(f"stream 'witness-{i}': recording to")  # audio came
        for witness in witnesses:
            witness.kill()
        for i in range(2):
            rx.wait_for(f"stream 'witness-{i}': alert down raised")
    finally:
        tx.kill()
        proxy.close()
        for witness in witnesses:
            witness.kill()
        for witness_proxy in witness_proxies:
            witness_proxy.close()
        rx.signal(signal.SIGINT)
        assert rx.wait(seconds(30)) == 0, rx.log
    assert "'roamer': alert down raised" not in rx.log, rx.log
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    packets = [line["packets"] for line in lines if line["stream"] == "roamer"]
    # counted over every part (the last line comes up to a second before the end)
    assert packets == sorted(packets) and packets[-1] >= 250, packets  # 350 sent
    audio, sidecar = joined_parts(rec, "roamer")
    parts = sidecar["parts"]
    assert len(parts) == 4, parts
    assert [p["outcome"] for p in parts[:3]] == ["connection lost; continued on another worker"] * 3
    assert sidecar["outcome"] == "complete"
    assert np.array_equal(audio, expected_tone(7 * RATE))


def test_a_worker_killed_mid_stream_is_started_again_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """kill -9 every worker while a stream runs: the supervisor starts them again, the
    sender reconnects, and the stream continues from the sidecar the dead worker left."""
    rec = tmp_path / "rec"
    rx, port = receiver("--workers", "2", "--record", str(rec), "--no-play")
    tx = tone_sender(f"ws://127.0.0.1:{port}", "survivor", 6)
    try:
        rx.wait_for("stream 'survivor' from")
        time.sleep(seconds(2.0))
        workers = children(rx.proc.pid)
        assert len(workers) == 2, workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
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
    """kill -9 of the supervisor leaves no orphans holding the port: the workers finalise
    their streams and exit, and a new receiver can start on the same port."""
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
            "receive",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--record",
            str(rec),
            "--no-play",
        )
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


def test_a_sender_back_on_the_other_worker_as_its_stream_ends_finds_it_complete(
    tmp_path: Path,
) -> None:
    """The worker holding a stream freezes just before the sender's last packet; the
    sender, hearing nothing, reconnects and lands on the other worker, which asks the
    frozen one to let go. When it thaws it reads the last packet and hands over at once:
    the stream ends once, complete, one part in each format, nothing cut or doubled."""
    rec = tmp_path / "rec"
    rx, port = receiver("--workers", "2", "--record", str(rec), "--format", "wav,mp3", "--no-play")
    first, second = (ports[0] for ports in ports_by_worker(port, 1))
    proxy = ProxyThread(port, source_ports=[first, second])
    tx = Micwire(
        "send", proxy.url, "--name", "late", "--source", "tone:440", "--duration", "3",
        "--finish-timeout", "30",
    )  # fmt: skip
    try:
        tx.wait_for("sending 'late'")
        held = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        (worker,) = {int(pid) for pid in re.findall(r"pid=(\d+)", held)}
        time.sleep(seconds(2.3))
        os.kill(worker, signal.SIGSTOP)  # past the sender's 6 s without a word
        time.sleep(seconds(9))
        os.kill(worker, signal.SIGCONT)
        assert tx.wait(seconds(30)) == 0, tx.log
        assert "nothing lost" in tx.lines[-1] and "1 reconnects" in tx.lines[-1], tx.log
    finally:
        tx.kill()
        proxy.close()
        rx.signal(signal.SIGINT)
        assert rx.wait(seconds(30)) == 0, rx.log
    (sidecar_path,) = rec.glob("late-*.json")
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["outcome"] == "complete"
    assert [(p["outcome"], p["samples"]) for p in sidecar["parts"]] == [("complete", 3 * RATE)]
    wav, mp3 = sidecar["parts"][0]["files"]
    assert np.array_equal(sf.read(str(rec / wav), dtype="int16")[0], expected_tone(3 * RATE))
    assert sf.info(str(rec / mp3)).frames == 3 * RATE


def test_a_sender_back_on_the_other_worker_right_after_its_last_packet_leaves_it_whole(
    tmp_path: Path,
) -> None:
    """A sender sends its stream in a burst and its last packet, and reconnects at once
    on the other worker (its "done" not yet heard), then resends from where it is told,
    as micwire's sender does. Whether the holder is still reading, finalising or done,
    every recording is the tone, whole, in each format; no part is taken for
    interrupted. (The race is timing-dependent: several tries, each a new stream.)"""
    from dataclasses import replace

    from websockets.asyncio.client import connect

    from micwire.common.protocol import FLAG_LAST, Hello, Packet, StreamParams

    rec, tries, n = tmp_path / "rec", 12, 2 * RATE
    rx, port = receiver("--workers", "2", "--record", str(rec), "--format", "wav,mp3", "--no-play")
    holder, newcomer = ports_by_worker(port, tries)
    tone = expected_tone(n)
    url = f"ws://127.0.0.1:{port}"

    async def stream(name: str, first_port: int, second_port: int, pause_s: float) -> None:
        now = int(time.time() * 1e6)
        first = Hello(name, StreamParams(), now - 3_000_000, now, stream_id=name * 4)

        async def send(ws: Any, start: int) -> None:
            for i, at in enumerate(range(start, n, 960)):
                chunk = tone[at : at + 960]
                await ws.send(Packet(i, at, len(chunk), chunk.tobytes()).serialize())
                await asyncio.sleep(0.001)  # (the worker keeps up: it ends as the last comes)
            last = len(range(start, n, 960))
            await ws.send(Packet(last, n, 0, b"", flags=FLAG_LAST).serialize())

        old = await connect(url, local_addr=("127.0.0.1", first_port))
        await old.send(first.serialize())
        secret = json.loads(await old.recv())["resume_secret"]
        await send(old, 0)
        await asyncio.sleep(pause_s)
        again = replace(first, resuming=True, resume_secret=secret)
        async with connect(url, local_addr=("127.0.0.1", second_port)) as new:
            await new.send(again.serialize())
            accept = json.loads(await new.recv())
            await send(new, accept["resume_timestamp"])
            async for message in new:
                if json.loads(message)["type"] == "done":
                    break
        old.transport.abort()

    try:
        for i in range(tries):
            asyncio.run(stream(f"race{i}", holder[i], newcomer[i], 0.005 * (i % 4)))
    finally:
        rx.signal(signal.SIGINT)
        assert rx.wait(seconds(30)) == 0, rx.log
    for i in range(tries):
        audio, sidecar = joined_parts(rec, f"race{i}")
        outcomes = [part["outcome"] for part in sidecar["parts"]]
        assert sidecar["outcome"] == "complete" and "interrupted" not in str(outcomes), sidecar
        assert np.array_equal(audio, tone), (i, outcomes)
        mp3 = [sf.info(str(rec / part["files"][1])).frames for part in sidecar["parts"]]
        assert sum(mp3) == n, (i, outcomes, mp3)
