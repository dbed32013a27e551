"""``micwire demo``: a receiver and two senders on built-in tones, in one process.

Shows the whole path with no microphone and no sound card: a PCM stream recorded to WAV
and MP3, an Opus stream likewise, played live if there is an output device.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import soundfile as sf

from ..receiver import Receiver, ReceiverConfig
from ..sender import Sender, SenderConfig

log = logging.getLogger("micwire")


async def run_demo(directory: Path, seconds: float, stop: asyncio.Event) -> int:
    receiver = Receiver(
        ReceiverConfig(host="127.0.0.1", port=0, record_dir=directory, formats=("wav", "mp3"))
    )
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(receiver.run(stop, ready.set_result))
    port = await ready
    url = f"ws://127.0.0.1:{port}"
    senders = [
        Sender(
            SenderConfig(url, name="demo-pcm", source="tone:440", codec="pcm", duration_s=seconds)
        ),
        Sender(
            SenderConfig(url, name="demo-opus", source="tone:660", codec="opus", duration_s=seconds)
        ),
    ]

    def stop_senders(_: object) -> None:
        for sender in senders:
            sender.stop()

    stopper = asyncio.create_task(stop.wait())
    stopper.add_done_callback(stop_senders)
    try:
        sent = await asyncio.gather(*(s.run() for s in senders))
    finally:
        stopper.cancel()
        while receiver.streams.live:  # let the receiver finish writing what it got
            await asyncio.sleep(0.02)
        stop.set()
        await serving
    print("\nmicwire demo: what was sent and what was recorded")
    for report in sent:
        print(f"  sender {report.stream!r}: {report.summary()}")
    for stream in receiver.monitor.finished:
        got = stream.figures()
        print(
            f"  receiver {got.stream!r} ({got.codec}): {stream.outcome}, {got.seconds:.2f} s, "
            f"{got.packets} packets, {got.gap_samples} samples missing"
        )
        part = stream.recording.part
        for path in part.paths if part is not None else []:
            info = sf.info(str(path))
            print(
                f"    {path}  {info.duration:.2f} s, {info.samplerate} Hz, {info.channels} ch, "
                f"{path.stat().st_size} bytes"
            )
    return 0
