"""What browser listeners cost the receiver: CPU with 0 and with N listeners on one stream.

A receiver (no playback, no recording) and one Opus sender (20 ms, tone) run as separate
processes; N listener clients (one process, aiohttp, reading every packet as a browser
would) join the stream. The receiver's CPU time is read from /proc over the same window
with 0 and with N listeners; the difference divided by N is the cost of one listener.

    .venv/bin/python bench/listeners.py [--listeners 50] [--seconds 20] [--codec opus]

Prints % of a core; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import aiohttp

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def listeners(url: str, n: int, seconds: float) -> tuple[int, int]:
    """n listeners for ``seconds``: (packets, bytes) received in all."""
    counts = [0, 0]

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(url) as ws:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    message = await ws.receive(timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.BINARY:
                    counts[0] += 1
                    counts[1] += len(message.data)
                elif message.type != aiohttp.WSMsgType.TEXT:
                    return

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session) for _ in range(n)))
    return counts[0], counts[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--codec", default="opus")
    parser.add_argument("--port", type=int, default=18790)
    args = parser.parse_args()
    py = sys.executable
    rx = subprocess.Popen(
        [
            py,
            "-m",
            "micwire",
            "receive",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
            "--no-play",
            "--no-live",
        ],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2)
    total = args.seconds * 3 + 10
    tx = subprocess.Popen(
        [
            py,
            "-m",
            "micwire",
            "send",
            f"ws://127.0.0.1:{args.port}",
            "--name",
            "bench",
            "--source",
            "tone:440",
            "--codec",
            args.codec,
            "--duration",
            str(total),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)
        start = cpu_seconds(rx.pid)
        time.sleep(args.seconds)
        idle = (cpu_seconds(rx.pid) - start) / args.seconds
        url = f"ws://127.0.0.1:{args.port}/api/listen/bench"
        client = subprocess.Popen(
            [
                py,
                "-c",
                f"import asyncio, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                f"from listeners import listeners; "
                f"print(asyncio.run(listeners({url!r}, {args.listeners}, {args.seconds + 4})))",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)  # everyone joined
        start = cpu_seconds(rx.pid)
        time.sleep(args.seconds)
        busy = (cpu_seconds(rx.pid) - start) / args.seconds
        out, _ = client.communicate(timeout=60)
    finally:
        tx.terminate()
        rx.terminate()
        tx.wait()
        rx.wait()
    packets, size = eval(out.strip()) if out.strip() else (0, 0)
    per = (busy - idle) / args.listeners * 100
    print(f"receiver, one {args.codec} stream (20 ms packets), {args.seconds:g} s windows:")
    print(f"  no listeners:        {idle * 100:6.2f} % of a core")
    print(f"  {args.listeners} listeners:        {busy * 100:6.2f} % of a core")
    print(f"  per listener:        {per:6.3f} % of a core")
    print(f"  listeners received {packets} packets, {size} bytes in all")


if __name__ == "__main__":
    main()
