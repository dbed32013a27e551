"""A paced load of many streams, written from docs/PROTOCOL.md (not from micwire's sender):
N streams of the same audio (a tone, encoded once), each sending one packet every frame
in real time on an absolute clock, over WebSockets to a micwire receiver, or as RTP/UDP
(RFC 7587 Opus payloads, RFC 3550 headers) to GStreamer. Cheap on purpose: the load
generator must not be what the machine spends its time on.

    python bench/loadgen.py ws://127.0.0.1:8765 --streams 10 --seconds 30 [--codec pcm]
    python bench/loadgen.py rtp://127.0.0.1:5000 --streams 10 --seconds 30   (ports 5000, 5002, ...)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import time
import uuid
from typing import Any
from urllib.parse import quote

import numpy as np

RATE = 48000
HEADER = struct.Struct("!BBHIQQ")  # PROTOCOL.md §4
RTP = struct.Struct("!BBHII")  # RFC 3550 §5.1: V=2, PT, seq, timestamp, SSRC


def audio_packets(
    codec: str, frame_ms: float, bitrate: int, seconds: float, big_endian: bool = False
) -> tuple[list[bytes], int]:
    """The payloads of one stream (a 440 Hz tone, -12 dBFS), and the Opus pre-skip.
    PCM is little-endian for micwire (PROTOCOL.md), big-endian for RTP L16 (RFC 3551)."""
    frame = int(RATE * frame_ms / 1000)
    n = int(seconds * RATE) // frame * frame
    t = np.arange(n) / RATE
    tone = np.rint(np.sin(2 * np.pi * 440 * t) * 0.25 * 32767).astype("<i2")
    if codec == "pcm":
        if big_endian:
            tone = tone.astype(">i2")
        return [tone[i : i + frame].tobytes() for i in range(0, n, frame)], 0
    import opuslib

    encoder = opuslib.Encoder(RATE, 1, "audio")
    encoder.bitrate = bitrate
    pre_skip = int(encoder.lookahead)
    return [
        encoder.encode(tone[i : i + frame].tobytes(), frame) for i in range(0, n, frame)
    ], pre_skip


async def websocket_stream(
    url: str,
    name: str,
    codec: str,
    frame_ms: float,
    bitrate: int,
    payloads: list[bytes],
    pre_skip: int,
    start: float,
    stats: dict[str, Any],
) -> None:
    import aiohttp

    frame = int(RATE * frame_ms / 1000)
    now_us = int(time.time() * 1e6)
    hello = {
        "type": "hello",
        "protocol": 2,
        "stream": name,
        "codec": codec,
        "rate_hz": RATE,
        "channels": 1,
        "frame_ms": frame_ms,
        "bitrate": bitrate,
        "pre_skip": pre_skip,
        "start_time_us": now_us,
        "sent_time_us": now_us,
        "software": "loadgen",
        "stream_id": uuid.uuid4().hex,
    }
    # /stream/<name>: what a receiver with --workers (or HAProxy's balance uri) routes by
    # (docs/PROTOCOL.md §10); any other path reaches any worker, which refuses a name it
    # does not own
    url = f"{url.rstrip('/')}/stream/{quote(name, safe='')}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0) as ws:
        await ws.send_str(json.dumps(hello))
        reply = json.loads((await ws.receive()).data)
        if reply.get("type") != "accept":
            stats["refused"] += 1
            return
        reader = asyncio.create_task(_drain(ws, stats))
        released = 0
        for seq, payload in enumerate(payloads):
            due = start + (seq + 1) * frame / RATE
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            samples = (
                frame
                if codec == "pcm"
                else max(0, min((seq + 1) * frame - pre_skip, len(payloads) * frame) - released)
            )
            released += samples
            last = seq == len(payloads) - 1
            header = HEADER.pack(
                1, 1 if last else 0, samples, seq, seq * frame, int(time.time() * 1e6)
            )
            await ws.send_bytes(header + payload)
            stats["packets"] += 1
        await asyncio.wait_for(reader, 30)


async def _drain(ws: Any, stats: dict[str, Any]) -> None:
    async for message in ws:
        if message.type.name == "TEXT":
            data = json.loads(message.data)
            if data.get("type") == "done":
                stats["done"] += 1
                stats["confirmed_samples"] += data["timestamp"]
                return


async def rtp_stream(
    host: str,
    port: int,
    payload_type: int,
    payloads: list[bytes],
    frame_ms: float,
    start: float,
    stats: dict[str, Any],
) -> None:
    frame = int(RATE * frame_ms / 1000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ssrc = port
    for seq, payload in enumerate(payloads):
        due = start + (seq + 1) * frame / RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sock.sendto(
            RTP.pack(0x80, payload_type, seq & 0xFFFF, (seq * frame) & 0xFFFFFFFF, ssrc) + payload,
            (host, port),
        )
        stats["packets"] += 1
    sock.close()


async def run(
    url: str,
    streams: int,
    seconds: float,
    codec: str,
    frame_ms: float,
    bitrate: int,
    name: str = "load",
) -> dict[str, Any]:
    rtp = url.startswith("rtp://")
    payloads, pre_skip = audio_packets(codec, frame_ms, bitrate, seconds, big_endian=rtp)
    stats: dict[str, Any] = {
        "packets": 0,
        "done": 0,
        "refused": 0,
        "confirmed_samples": 0,
        "samples_each": len(payloads) * int(RATE * frame_ms / 1000),
    }
    start = time.monotonic() + 0.5
    if rtp:
        host, port = url[len("rtp://") :].rsplit(":", 1)
        payload_type = 96 if codec == "opus" else 97
        tasks = [
            rtp_stream(host, int(port) + 2 * k, payload_type, payloads, frame_ms, start, stats)
            for k in range(streams)
        ]
    else:
        tasks = [
            websocket_stream(
                url, f"{name}-{k}", codec, frame_ms, bitrate, payloads, pre_skip, start, stats
            )
            for k in range(streams)
        ]
    await asyncio.gather(*tasks)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--codec", default="opus")
    parser.add_argument("--frame-ms", type=float, default=20.0)
    parser.add_argument("--bitrate", type=int, default=32000)
    parser.add_argument("--name", default="load")
    args = parser.parse_args()
    stats = asyncio.run(
        run(
            args.url, args.streams, args.seconds, args.codec, args.frame_ms, args.bitrate, args.name
        )
    )
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
