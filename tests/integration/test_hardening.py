"""Nothing lost, nobody let in: what a hostile or flaky network does to a stream, on real
WebSockets on 127.0.0.1 (in-process receiver and senders; tone and file sources)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from proxy import ImpairmentProxy
from rig import (
    converse,
    expected_tone,
    hello,
    receiver_on,
    running_receiver,
    small_disk,
    until,
)
from websockets.asyncio.client import connect

from micwire.common.errors import TransportError
from micwire.common.protocol import FLAG_LAST, Hello, Packet, StreamParams
from micwire.receiver import parts
from micwire.sender import Sender, SenderConfig
from micwire.sender.sources import ToneSource


def parts_of(directory: Path, name: str) -> tuple[dict[str, Any], np.ndarray]:
    """The stream's sidecar and its parts' audio, end to end."""
    sidecars = [json.loads(p.read_text()) for p in directory.glob("*.json")]
    (sidecar,) = [s for s in sidecars if s["stream"] == name]
    audio = [
        sf.read(str(directory / part["files"][0]), dtype="int16", always_2d=True)[0]
        for part in sidecar["parts"]
    ]
    return sidecar, np.concatenate(audio)


def test_the_spool_holds_time_even_with_small_device_blocks(tmp_path: Path) -> None:
    """A device delivering 256-sample blocks (JACK's usual period), --spool-s 5, the
    receiver gone for 1.5 s (and up to 2 s of the sender's back-off on top): nothing is
    lost (the spool counts samples, not packets; by packets it held 250 x 256 samples =
    1.3 s)."""
    rec = tmp_path / "rec"

    async def main() -> Any:
        async with running_receiver(record_dir=rec) as (_rx, url):
            port = int(url.rsplit(":", 1)[1])
        # that receiver is gone; the sender starts against its successor's port
        async with receiver_on(port, record_dir=rec):
            sender = Sender(
                SenderConfig(url, name="small", spool_s=5.0, duration_s=4.0),
                source=ToneSource(440, 48000, 1, 256),
            )
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(1.0)
        await asyncio.sleep(1.5)  # nobody listening: the sender keeps capturing
        async with receiver_on(port, record_dir=rec):
            return await task

    sent = asyncio.run(main())
    assert sent.link_lost_samples == 0 and sent.confirmed == sent.samples_captured == 4 * 48000
    sidecar, audio = parts_of(rec, "small")
    assert len(sidecar["parts"]) == 2
    assert np.array_equal(audio[:, 0], expected_tone(4 * 48000))


def chirp(n: int) -> np.ndarray:
    t = np.arange(n) / 48000
    return np.rint(np.sin(2 * np.pi * (150 + 900 * t) * t) * 12000).astype(np.int16)


def assert_opus_like(audio: np.ndarray, source: np.ndarray) -> None:
    """Same length, and every 100 ms in place and like the source: no gap, no overlap,
    no burst where a part begins."""
    assert len(audio) == len(source)
    got, want = audio.astype(float), source.astype(float)
    for start in range(0, len(want) - 4800, 4800):
        window = slice(start, start + 4800)
        assert np.corrcoef(got[window], want[window])[0, 1] > 0.95, start / 48000
    assert np.max(np.abs(got)) < 1.3 * np.max(np.abs(want))


@pytest.mark.parametrize("how", ["restarted", "grace expired"])
def test_opus_resumes_gap_free_when_the_receiver_no_longer_holds_the_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """The receiver lost the stream's decoder (restarted, or it gave up waiting): it finds
    the stream's recording by its sidecar, and the sender encodes from where it ends with
    a fresh encoder. The parts together are the capture, exactly as long, aligned."""
    source = chirp(5 * 48000)
    sf.write(str(tmp_path / "src.wav"), source, 48000)
    rec = tmp_path / "rec"

    async def restarted() -> Any:
        async with running_receiver(record_dir=rec) as (_rx, url):
            port = int(url.rsplit(":", 1)[1])
        async with receiver_on(port, record_dir=rec):
            sender = Sender(
                SenderConfig(
                    url,
                    name="phoenix",
                    codec="opus",
                    bitrate=96000,
                    source=f"file:{tmp_path / 'src.wav'}",
                )
            )
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(1.5)
        await asyncio.sleep(0.5)
        async with receiver_on(port, record_dir=rec) as rx:
            sent = await task
            # the page shows the whole stream, not only the part since the restart
            (view,) = rx.monitor.local_views()
            assert view["seconds"] == 5.0, view
            # ...up since its start before the restart (about 5 s; since the restart would be
            # about 3: the receiver first saw it a connection set-up after its capture
            # began, so a little under 5 s is right), its sender's reconnection counted
            assert view["uptime_s"] >= 4.5 and view["reconnects"] == 1, view
            return sent

    async def grace_expired() -> Any:
        async with (
            running_receiver(record_dir=rec, resume_grace_s=0.3) as (_rx, url),
            ImpairmentProxy(int(url.rsplit(":", 1)[1])) as proxy,
        ):
            sender = Sender(
                SenderConfig(
                    proxy.url,
                    name="phoenix",
                    codec="opus",
                    bitrate=96000,
                    source=f"file:{tmp_path / 'src.wav'}",
                )
            )
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(1.5)
            proxy.refuse_new = True
            proxy.cut()
            await asyncio.sleep(1.0)  # longer than the grace: the stream is finalised
            proxy.refuse_new = False
            return await task

    with caplog.at_level(logging.INFO):
        sent = asyncio.run(restarted() if how == "restarted" else grace_expired())
    assert sent.link_lost_samples == 0 and sent.confirmed == sent.samples_captured == len(source)
    sidecar, audio = parts_of(rec, "phoenix")
    assert len(sidecar["parts"]) == 2 and sidecar["parts"][1]["origin"] > 0
    assert sidecar["reconnects"] == 1
    assert_opus_like(audio[:, 0], source)
    # the fresh encoder's warm-up (sent on purpose from before the resume point) is said
    # as such, not as packets the receiver had already
    assert "duplicate" not in caplog.text
    assert re.search(r"0\.5\d s of codec warm-up before the resume point", caplog.text)


def test_a_new_record_directory_starts_where_the_receiver_confirmed(tmp_path: Path) -> None:
    """The record directory was deleted (or the receiver moved): a resuming sender is a new
    recording, starting at the first audio the receiver had not acknowledged; the sidecar
    says where on the stream's timeline that is."""
    first, second = tmp_path / "first", tmp_path / "second"

    async def main() -> Any:
        async with running_receiver(record_dir=first) as (_rx, url):
            port = int(url.rsplit(":", 1)[1])
            sender = Sender(SenderConfig(url, name="moved", source="tone:440", duration_s=4.0))
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(2.0)
        async with receiver_on(port, record_dir=second):
            return await task

    sent = asyncio.run(main())
    assert sent.confirmed == sent.samples_captured == 4 * 48000
    sidecar, audio = parts_of(second, "moved")
    origin = sidecar["origin"]
    # what the first receiver had acknowledged (about once a second) before it went
    assert 0 < origin < 2 * 48000 + 4800
    assert np.array_equal(audio[:, 0], expected_tone(4 * 48000)[origin:])


def test_bare_hellos_do_not_keep_real_streams_out(tmp_path: Path) -> None:
    """Connections that say hello and send no audio (anyone with the send token can open
    them, again every 30 s) do not take the slots of streams: a sender with audio still
    gets in, and the connection silent the longest is closed to make room for it."""
    rec = tmp_path / "rec"

    async def main() -> tuple[Any, list[Any], list[int | None]]:
        async with running_receiver(record_dir=rec, max_streams=2) as (rx, url):
            squatters = [await connect(url) for _ in range(2)]
            for k, ws in enumerate(squatters):
                await ws.send(hello(stream=f"squatter-{k}"))
                assert json.loads(await ws.recv())["type"] == "accept"
            sent = await Sender(
                SenderConfig(url, name="real", source="tone:440", duration_s=1.0)
            ).run()
            codes = []
            for ws in squatters:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.wait_closed(), 0.5)
                codes.append(ws.close_code)
                await ws.close()
            return sent, rx.monitor.finished, codes

    sent, finished, codes = asyncio.run(main())
    assert sent.confirmed == sent.samples_captured == 48000
    assert [s.outcome.text for s in finished] == ["complete"]
    assert codes == [1006, None]  # the first squatter was cut; the second still waits


def test_a_name_with_a_line_break_connects_on_its_own_path(tmp_path: Path) -> None:
    """A sender connects to /stream/<name> (the path --workers and HAProxy route by); a
    name may hold any character but a few (shown escaped), a line break too."""
    from urllib.parse import quote

    async def main() -> tuple[int | None, str, list[Any]]:
        async with running_receiver(record_dir=tmp_path, idle_timeout_s=0.5) as (_rx, url):
            name = "line\nbreak\rcr"
            return await converse(f"{url}/stream/{quote(name, safe='')}", hello(stream=name))

    code, reason, replies = asyncio.run(main())
    assert json.loads(replies[0])["type"] == "accept", replies
    assert (code, reason) == (1013, "no audio for 0.5 s")


def test_a_half_open_link_at_max_streams_resumes_into_its_own_slot(tmp_path: Path) -> None:
    """The link goes dead silently (no reset) on a full receiver: the sender notices the
    silence, reconnects, proves the stream is its own and takes over its stale connection,
    which still counts as the one stream allowed. Nothing lost."""
    source = np.random.default_rng(3).integers(-9000, 9000, 12 * 48000, dtype=np.int16)
    sf.write(str(tmp_path / "src.wav"), source, 48000, subtype="PCM_16")
    rec = tmp_path / "rec"

    async def main() -> Any:
        async with running_receiver(record_dir=rec, max_streams=1) as (rx, url):
            async with ImpairmentProxy(int(url.rsplit(":", 1)[1])) as proxy:
                sender = Sender(
                    SenderConfig(proxy.url, name="solo", source=f"file:{tmp_path / 'src.wav'}")
                )
                task = asyncio.create_task(sender.run())
                await asyncio.sleep(1.5)
                proxy.freeze()
                sent = await task
            return sent, rx.monitor.finished

    sent, finished = asyncio.run(main())
    assert sent.reconnects == 1 and sent.link_lost_samples == 0
    assert sent.confirmed == sent.samples_captured == len(source)
    assert [s.outcome.text for s in finished] == ["complete"]
    sidecar, audio = parts_of(rec, "solo")
    assert len(sidecar["parts"]) == 1 and np.array_equal(audio[:, 0], source)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_hellos_and_resets_cost_nothing_and_are_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hundreds of connections that say hello (some send one packet) and vanish: a hello
    alone creates no file; streams waiting for their sender are bounded and hold no file
    descriptors beyond their files; the log says so a few times, not hundreds; a real
    sender still gets in and records exactly."""
    rec = tmp_path / "rec"

    async def vanish(url: str, k: int, with_audio: bool) -> None:
        from websockets.asyncio.client import connect

        ws = await connect(url, compression=None)
        await ws.send(hello(stream=f"ghost-{k}", stream_id="x", protocol=2))
        await ws.recv()
        if with_audio:
            await ws.send(Packet(0, 0, 960, b"\0" * 1920).serialize())
            await asyncio.sleep(0.01)
        ws.transport.abort()

    async def main() -> Any:
        async with running_receiver(record_dir=rec, max_streams=4, max_parked=3) as (rx, url):
            before = fd_count()
            for k in range(150):
                await vanish(url, k, with_audio=False)
            assert not list(rec.iterdir())  # a bare hello leaves nothing behind
            for k in range(150, 300):
                await vanish(url, k, with_audio=True)
            await asyncio.sleep(0.2)
            parked, after = len(rx.streams.parked), fd_count()
            sent = await Sender(
                SenderConfig(url, name="real", source="tone:440", duration_s=0.5)
            ).run()
            return parked, after - before, sent

    with caplog.at_level(logging.INFO):
        parked, fds, sent = asyncio.run(main())
    assert parked <= 3
    assert fds <= 3 * 3 + 10  # 3 parked streams' files (wav + sidecar) and a few sockets
    assert sent.confirmed == sent.samples_captured == 24000
    keeping = [r for r in caplog.records if "keeping it open" in r.getMessage()]
    assert len(keeping) <= 10, len(keeping)


def test_a_silent_connection_is_closed_and_leaves_nothing(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, str, list[Any]]:
        async with running_receiver(record_dir=tmp_path, idle_timeout_s=0.5) as (_rx, url):
            return await converse(url, hello(stream="mute"))

    code, reason, _ = asyncio.run(main())
    assert (code, reason) == (1013, "no audio for 0.5 s")
    assert list(tmp_path.iterdir()) == []


def test_a_packet_far_ahead_of_real_time_is_refused(tmp_path: Path) -> None:
    """24 bytes cannot demand an hour of silence: a stream's timeline may not run ahead of
    the time since it started (plus its sender's claimed backlog and 2 s)."""

    async def main() -> tuple[int | None, str, list[Any]]:
        async with running_receiver(record_dir=tmp_path) as (_rx, url):
            packets = [Packet(0, 0, 960, b"\0" * 1920).serialize()]
            packets += [Packet(k, k * 600 * 48000, 0, b"").serialize() for k in range(1, 7)]
            return await converse(url, hello(stream="greedy"), *packets)

    code, reason, _ = asyncio.run(main())
    assert code == 1002 and "ahead of the stream's real time" in reason
    wav = next(tmp_path.glob("greedy-*.wav"))
    assert sf.info(str(wav)).frames == 960 and wav.stat().st_size < 10_000


def test_an_unexpected_error_is_logged_and_closed_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in handling one stream: that connection gets 1011 and a reason, the log has
    the traceback, every other stream carries on."""
    from micwire.receiver.stream import Stream

    real = Stream.on_packet

    async def faulty(self: Stream, packet: Packet) -> bool:
        if self.name == "victim" and packet.seq == 3:
            raise RuntimeError("boom")
        return await real(self, packet)

    monkeypatch.setattr(Stream, "on_packet", faulty)

    async def main() -> Any:
        async with running_receiver(record_dir=tmp_path) as (_rx, url):
            good = asyncio.create_task(
                Sender(SenderConfig(url, name="good", source="tone:440", duration_s=1.0)).run()
            )
            packets = [Packet(k, 960 * k, 960, b"\0" * 1920).serialize() for k in range(6)]
            bad = await converse(url, hello(stream="victim"), *packets)
            return bad, await good

    (code, reason, _), sent = asyncio.run(main())
    assert (code, reason) == (1011, "internal error: RuntimeError")
    assert "unexpected error" in caplog.text and "RuntimeError: boom" in caplog.text
    assert sent.confirmed == sent.samples_captured == 48000


def test_a_full_disk_is_said_to_the_sender_and_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_disk(tmp_path) as disk:

        async def main() -> None:
            async with running_receiver(record_dir=disk) as (_rx, url):
                with pytest.raises(TransportError, match="no space left on device"):
                    await Sender(
                        SenderConfig(url, name="big", source="tone:440", reconnect=False)
                    ).run()

        asyncio.run(main())
        names = sorted(p.name for p in disk.iterdir())
        assert not [n for n in names if n.endswith(".tmp")], names
        (sidecar,) = [json.loads(p.read_text()) for p in disk.glob("*.json")]
        assert sidecar["outcome"].startswith("failed: no space left on device")
        data, _ = sf.read(str(disk / sidecar["files"][0]), dtype="int16")
        assert len(data) > 48000  # what fit is there and readable
    assert "no space left on device" in caplog.text


def test_a_slow_first_connection_is_no_reason_to_refuse(tmp_path: Path) -> None:
    """The first connection takes 3.5 s (slow DNS, a busy receiver): the sender's hello
    says how much audio it holds once it is connected, so its backlog is accepted."""

    async def main() -> Any:
        async with (
            running_receiver(record_dir=tmp_path) as (_rx, url),
            ImpairmentProxy(int(url.rsplit(":", 1)[1])) as proxy,
        ):
            stall = asyncio.create_task(proxy.stall(3.5))
            sent = await Sender(
                SenderConfig(proxy.url, name="slow", source="tone:440", duration_s=5.0)
            ).run()
            await stall
            return sent

    sent = asyncio.run(main())
    assert sent.link_lost_samples == 0 and sent.confirmed == sent.samples_captured == 5 * 48000
    data, _ = sf.read(str(next(tmp_path.glob("slow-*.wav"))), dtype="int16")
    assert np.array_equal(data, expected_tone(5 * 48000))


def test_claiming_a_long_capture_buys_no_silence(tmp_path: Path) -> None:
    """A hello that claims 10,000 s of capture and a packet at the end of it: silence costs
    nothing to ask for, so a stream may only have as much as the time since it began."""
    from micwire.common.protocol import FLAG_LAST, Hello, StreamParams

    params = StreamParams("pcm", 192000, 8, 20.0)
    claimed = 10_000 * 192000

    async def main() -> tuple[int | None, str, list[Any]]:
        async with running_receiver(record_dir=tmp_path) as (_rx, url):
            now = int(time.time() * 1e6)
            text = Hello("greedy", params, now - 10_000_000_000, now, stream_id="g").serialize()
            last = Packet(0, claimed + 190000, 0, b"", flags=FLAG_LAST).serialize()
            return await converse(url, text, last)

    code, reason, _ = asyncio.run(main())
    assert code == 1002 and "more silence than the time since the stream began" in reason
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 100_000


@pytest.mark.parametrize("codec", ["pcm", "opus"])
def test_an_outage_longer_than_the_spool_loses_the_oldest_counted(
    tmp_path: Path, codec: str
) -> None:
    """The sender keeps trying (it does not give up after --spool-s): what the spool could
    not hold is counted, and recorded as exactly that much silence."""
    rec = tmp_path / "rec"

    async def main() -> Any:
        async with (
            running_receiver(record_dir=rec) as (_rx, url),
            ImpairmentProxy(int(url.rsplit(":", 1)[1])) as proxy,
        ):
            config = SenderConfig(
                proxy.url, name="long", source="tone:440", codec=codec, duration_s=7.0
            )
            sender = Sender(replace(config, spool_s=1.0))
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(1.5)
            proxy.refuse_new = True
            proxy.cut()
            await asyncio.sleep(3.5)
            proxy.refuse_new = False
            return await task

    sent = asyncio.run(main())
    assert sent.link_lost_samples > 2 * 48000
    assert sent.confirmed == sent.samples_captured == 7 * 48000
    sidecar, audio = parts_of(rec, "long")
    assert sum(g["samples"] for g in sidecar["gaps"]) == sent.link_lost_samples
    tone = expected_tone(7 * 48000)
    kept = np.ones(len(tone), bool)
    for gap in sidecar["gaps"]:
        kept[gap["at_sample"] : gap["at_sample"] + gap["samples"]] = False
        assert not audio[gap["at_sample"] : gap["at_sample"] + gap["samples"]].any()
    if codec == "pcm":
        assert np.array_equal(audio[kept, 0], tone[kept])
    else:  # lossy, but the tone is there everywhere else: no silence that was not counted
        pieces = audio[kept, 0][: (kept.sum() // 480) * 480].reshape(-1, 480).astype(float)
        assert np.sqrt((pieces**2).mean(axis=1)).min() > 0.5 * np.sqrt((tone**2).mean())


def test_a_link_slower_than_the_stream_counts_each_lost_sample_once(tmp_path: Path) -> None:
    """A link that carries half the stream (a congested uplink), then breaks: once the
    sender's socket holds a second's worth, the spool overflows again and again (the
    sender skips what it dropped, counted), and what was
    in flight past those skips is lost with the link, so the receiver asks again from
    before them. The sender's count is exactly the silence in the recording: a span found
    missing twice is counted once."""
    rec = tmp_path / "rec"

    async def main() -> Any:
        async with (
            running_receiver(record_dir=rec) as (_rx, url),
            # PCM mono 48 kHz needs 96 kB/s
            ImpairmentProxy(int(url.rsplit(":", 1)[1]), rate_bytes_s=48_000) as proxy,
        ):
            config = SenderConfig(
                proxy.url, name="slow", source="tone:440", codec="pcm", duration_s=12.0
            )
            task = asyncio.create_task(Sender(replace(config, spool_s=1.0)).run())
            await asyncio.sleep(9.0)
            proxy.rate_bytes_s = None
            proxy.cut()
            return await task

    sent = asyncio.run(main())
    assert sent.confirmed == sent.samples_captured == 12 * 48000
    sidecar, audio = parts_of(rec, "slow")
    # the sender's socket holds about a second (not megabytes): the spool took the rest,
    # and skipped what it dropped while the link was up (then the cut lost more)
    assert len(sidecar["gaps"]) >= 2, sidecar["gaps"]
    assert sent.link_lost_samples > 48000
    assert sum(g["samples"] for g in sidecar["gaps"]) == sent.link_lost_samples
    tone = expected_tone(12 * 48000)
    kept = np.ones(len(tone), bool)
    for gap in sidecar["gaps"]:
        kept[gap["at_sample"] : gap["at_sample"] + gap["samples"]] = False
        assert not audio[gap["at_sample"] : gap["at_sample"] + gap["samples"]].any()
    assert np.array_equal(audio[kept, 0], tone[kept])


def test_after_a_restart_the_name_waits_for_its_own_sender(tmp_path: Path) -> None:
    """The receiver restarts while a stream is interrupted: someone else with the stream's
    name (and its id, from the sidecar) and a guessed secret is refused for now; the
    stream's sender, with its secret, continues it."""
    rec = tmp_path / "rec"

    async def main() -> Any:
        async with running_receiver(record_dir=rec) as (_rx, url):
            port = int(url.rsplit(":", 1)[1])
            victim = Sender(SenderConfig(url, name="victim", source="tone:440", duration_s=4.0))
            task = asyncio.create_task(victim.run())
            await asyncio.sleep(1.5)
        async with receiver_on(port, record_dir=rec):
            attempt = await converse(
                url,
                hello(
                    stream="victim",
                    stream_id=victim.stream_id,
                    resuming=True,
                    resume_secret="guessed",
                ),
            )
            return attempt, await task

    (code, reason, replies), sent = asyncio.run(main())
    assert code == 1013 and reason.startswith("stream name 'victim' is in use: held for its")
    # the refusal says whose the name is and until when, and when to try again
    refusal = json.loads(replies[0])
    assert re.fullmatch(
        r"stream name 'victim' is in use: held for its sender at 127\.0\.0\.1:\d+, which may "
        r"come back to continue it, until \d\d:\d\d:\d\d UTC \((\d+) s\); pick another "
        r"name, or retry then",
        refusal["reason"],
    ), refusal
    assert refusal["retry"] is True and 50 <= refusal["retry_after_s"] <= 60
    assert sent.confirmed == sent.samples_captured == 4 * 48000
    sidecar, audio = parts_of(rec, "victim")
    assert len(sidecar["parts"]) == 2 and np.array_equal(audio[:, 0], expected_tone(4 * 48000))


def test_empty_packets_do_not_hold_a_slot(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, str]:
        async with running_receiver(record_dir=tmp_path, idle_timeout_s=0.5) as (_rx, url):
            from websockets.asyncio.client import connect

            async with connect(url) as ws:
                await ws.send(hello(stream="squatter"))
                await ws.recv()
                with contextlib.suppress(Exception):
                    for k in range(20):
                        await ws.send(Packet(k, 0, 0, b"").serialize())
                        await asyncio.sleep(0.1)
                await ws.wait_closed()
                return ws.close_code, ws.close_reason

    assert asyncio.run(main()) == (1013, "no audio for 0.5 s")


def test_the_record_directory_removed_while_recording(tmp_path: Path) -> None:
    """Someone deletes the record directory mid-stream: the recording fails (said so),
    the sender comes back, the receiver makes the directory again and records from what
    it had not acknowledged; nothing is lost from the sender's point of view."""
    import shutil

    rec = tmp_path / "rec"

    async def main() -> Any:
        async with running_receiver(record_dir=rec) as (_rx, url):
            task = asyncio.create_task(
                Sender(SenderConfig(url, name="rm", source="tone:440", duration_s=4.0)).run()
            )
            await asyncio.sleep(1.5)
            shutil.rmtree(rec)
            return await task

    sent = asyncio.run(main())
    assert sent.confirmed == sent.samples_captured == 4 * 48000
    sidecar, audio = parts_of(rec, "rm")
    origin = sidecar["origin"]
    # from the last acknowledgement (what went into the deleted files is gone with them)
    assert 0 < origin <= 2.5 * 48000
    assert np.array_equal(audio[:, 0], expected_tone(4 * 48000)[origin:])


def test_a_rate_the_recording_format_cannot_hold_is_refused_at_once(tmp_path: Path) -> None:
    from micwire.common.errors import RefusedError

    async def main() -> None:
        async with running_receiver(record_dir=tmp_path, formats=("mp3",)) as (_rx, url):
            with pytest.raises(RefusedError, match="records mp3: mp3 cannot hold 96000 Hz"):
                await Sender(SenderConfig(url, name="hi", source="tone:440", rate_hz=96000)).run()

    asyncio.run(main())
    assert list(tmp_path.iterdir()) == []


def test_names_that_are_not_text_are_refused(tmp_path: Path) -> None:
    async def main() -> list[tuple[int | None, str, list[Any]]]:
        async with running_receiver(record_dir=tmp_path) as (_rx, url):
            return [
                await converse(url, hello(stream="\ud800evil")),
                await converse(url, hello(software="\udfff")),
            ]

    for code, reason, _ in asyncio.run(main()):
        assert code == 1008 and "is not valid Unicode text" in reason
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["/", "/api/events", "/elsewhere"])
def test_a_peer_that_hangs_up_during_the_upgrade_leaves_no_traceback(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that asks for a WebSocket and is gone before the answer (a sender giving up
    on a receiver that was busy or frozen): nothing to say about it in the log."""

    async def main() -> None:
        async with running_receiver() as (_rx, url):
            port = int(url.rsplit(":", 1)[1])
            # while the receiver's loop is busy: the request and the hang-up arrive together
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                )
            await asyncio.sleep(0.5)
            async with connect(url) as ws:  # and the receiver serves on
                await ws.send(hello(stream="after"))
                assert json.loads(await ws.recv())["type"] == "accept"

    with caplog.at_level(logging.DEBUG, logger="aiohttp"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def resume(ws: Any, first: Hello, secret: str) -> int:
    """Say the resuming hello of ``first``'s stream; where the receiver has it up to."""
    await ws.send(replace(first, resuming=True, resume_secret=secret).serialize())
    reply = json.loads(await ws.recv())
    assert reply["type"] == "accept", reply
    at: int = reply["resume_timestamp"]
    return at


async def until_done(ws: Any) -> dict[str, Any]:
    """Read the receiver's messages up to its "done"."""
    async for message in ws:
        if (reply := json.loads(message))["type"] == "done":
            return dict(reply)
    raise AssertionError("closed without a done")


async def whole_stream(ws: Any, first: Hello, tone: np.ndarray) -> str:
    """Send a hello and the tone in 960-sample packets, the last one flagged; the
    stream's resume secret."""
    await ws.send(first.serialize())
    secret: str = json.loads(await ws.recv())["resume_secret"]
    for i in range(0, len(tone), 960):
        await ws.send(Packet(i // 960, i, 960, tone[i : i + 960].tobytes()).serialize())
    await ws.send(Packet(len(tone) // 960, len(tone), 0, b"", flags=FLAG_LAST).serialize())
    return secret


@pytest.mark.parametrize("wait_s", [0.0, 0.5], ids=["before-the-end-is-read", "while-written"])
def test_a_sender_back_as_its_stream_ends_finds_it_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, wait_s: float
) -> None:
    """A sender sent its last packet but heard nothing back (the receiver was frozen), so
    it reconnects; the receiver, catching up, ends the stream from the old connection as
    the new hello comes in (on a slow disk): before it read the old connection's last
    packet, or while it writes the end. Either way the stream ends once, the sender is
    told where it ends, and the recording stays one complete part."""
    rec = tmp_path / "rec"
    written = parts.write_sidecar
    landed: list[Any] = []

    def slow_disk(path: Path, record: Any) -> None:
        time.sleep(0.3)
        written(path, record)
        landed.append(record.to_json())

    monkeypatch.setattr(parts, "write_sidecar", slow_disk)
    tone = expected_tone(4800)

    async def main() -> None:
        async with running_receiver(record_dir=rec) as (rx, url):
            now = int(time.time() * 1e6)
            first = Hello("back", StreamParams(), now - 100_000, now, stream_id="r" * 32)
            async with connect(url) as old:
                secret = await whole_stream(old, first, tone)
                await asyncio.sleep(wait_s)
                async with connect(url) as new:
                    assert await resume(new, first, secret) == 4800
                    await until(  # the old connection's end is written first
                        lambda: any(d.get("outcome") == "complete" for d in landed),
                        "the stream's end was not written",
                    )
                    await new.send(Packet(0, 4800, 0, b"", flags=FLAG_LAST).serialize())
                    done = await until_done(new)
                    assert done["recording"].startswith("back-"), done  # the stream's file
            # each part ended once (not the old one finalised again, as if it went on)
            assert (
                len({id(stream) for stream in rx.monitor.finished}) == len(rx.monitor.finished) == 2
            )
            # the page shows the stream, not the empty connection that confirmed it
            (view,) = [v for v in rx.monitor.local_views() if v["stream"] == "back"]
            assert (view["state"], view["outcome"], view["seconds"]) == ("ended", "complete", 0.1)
            assert sorted(r["name"].rsplit(".")[-1] for r in view["recordings"]) == ["json", "wav"]

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    sidecar, audio = parts_of(rec, "back")
    assert sidecar["outcome"] == "complete"
    assert [p["outcome"] for p in sidecar["parts"]] == ["complete"]
    assert np.array_equal(audio[:, 0], tone)
    assert "new part" not in caplog.text
    assert "came back to hear it confirmed; it had ended complete (0.10 s" in caplog.text


def test_a_sender_back_after_its_stream_ended_leaves_it_complete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender whose "done" got lost comes back to a stream that ended complete, and
    loses that link too before saying its (empty) last packet: the recording still says
    complete, and the name is free for the next stream at once."""
    rec = tmp_path / "rec"
    tone = expected_tone(4800)

    async def main() -> None:
        async with running_receiver(record_dir=rec) as (_, url):
            now = int(time.time() * 1e6)
            first = Hello("again", StreamParams(), now - 100_000, now, stream_id="a" * 32)
            async with connect(url) as old:
                secret = await whole_stream(old, first, tone)
                await until_done(old)
            async with connect(url) as new:
                assert await resume(new, first, secret) == 4800
            await until(
                lambda: "that connection: sender closed without end-of-stream" in caplog.text,
                "the receiver did not notice the close",
            )
            other = Hello("again", StreamParams(), now, now, stream_id="b" * 32)
            async with connect(url) as newcomer:
                await newcomer.send(other.serialize())
                assert json.loads(await newcomer.recv())["type"] == "accept"

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    # the stream stays complete; what became of the connection that came back is said
    assert "ended complete (0.10 s" in caplog.text
    assert "; that connection: sender closed without end-of-stream" in caplog.text
    sidecars = [json.loads(p.read_text()) for p in rec.glob("*.json")]
    (sidecar,) = [s for s in sidecars if s["stream_id"] == "a" * 32]
    assert (sidecar["outcome"], sidecar["samples"]) == ("complete", 4800)
    assert [p["outcome"] for p in sidecar["parts"]] == ["complete"]


def test_each_sender_of_a_name_has_its_own_lines_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One room's stream, started again and again from one address (a flaky box, a
    script): each new sender's lines count apart, so the seventh start and end are still
    in the log, not suppressed as repeats of the first six."""
    tone = expected_tone(960)

    async def main() -> None:
        async with running_receiver(record_dir=tmp_path) as (_, url):
            for k in range(7):
                now = int(time.time() * 1e6)
                first = Hello("room", StreamParams(), now, now, stream_id=f"{k:032d}")
                async with connect(url) as ws:
                    await ws.send(first.serialize())
                    await ws.recv()
                    await ws.send(Packet(0, 0, 960, tone.tobytes()).serialize())
                    await ws.send(Packet(1, 960, 0, b"", flags=FLAG_LAST).serialize())
                    await until_done(ws)

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert caplog.text.count("stream 'room' from 127.0.0.1") == 14, caplog.text
    assert "like 'stream %r from" not in caplog.text  # (the filter is the process's)
