"""Sender and receiver over real WebSockets on 127.0.0.1: exact recordings, many streams,
hostile input. Sources are files and tones (paced in real time); no sound device needed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from rig import best_lag, converse, expected_tone, good_packet, hello, read_single, running_receiver
from websockets.asyncio.client import connect

from micwire.common.errors import TransportError
from micwire.common.protocol import HEADER, Hello, Packet, StreamParams
from micwire.receiver.server import Receiver, ReceiverConfig
from micwire.sender import Sender, SenderConfig
from micwire.sender.config import SenderReport


def noise_file(
    path: Path, n: int, rate: int = 48000, channels: int = 1, seed: int = 0
) -> np.ndarray:
    data = np.random.default_rng(seed).integers(-20000, 20000, (n, channels), dtype=np.int16)
    sf.write(str(path), data, rate, subtype="PCM_16")
    return data


def chirp(n: int, rate: int = 48000) -> np.ndarray:
    t = np.arange(n) / rate
    return np.rint(np.sin(2 * np.pi * (150 + 900 * t) * t) * 12000).astype(np.int16)


def test_pcm_recording_equals_the_source_sample_for_sample(tmp_path: Path) -> None:
    source = noise_file(tmp_path / "src.wav", 48000 + 123, channels=2)
    rec = tmp_path / "rec"

    async def main() -> Any:
        async with running_receiver(record_dir=rec, formats=("wav", "flac", "mp3")) as (rx, url):
            sent = await Sender(
                SenderConfig(
                    url,
                    name="exact",
                    source=f"file:{tmp_path / 'src.wav'}",
                    channels=2,
                    frame_ms=10.0,
                )
            ).run()
        return sent, rx.monitor.finished

    sent, reports = asyncio.run(main())
    assert (
        sent.samples_captured == len(source)
        and sent.link_lost_samples == 0
        and sent.confirmed == sent.samples_captured
    )
    assert reports[0].outcome.text == "complete" and reports[0].stats().gap_samples == 0
    for ext in ("wav", "flac"):
        data, rate, _ = read_single(rec, f"exact-*.{ext}")
        assert rate == 48000 and np.array_equal(data, source), ext
    data, rate, path = read_single(rec, "exact-*.mp3")
    info = sf.info(str(path))
    assert (rate, info.channels) == (48000, 2)
    assert abs(len(data) - len(source)) <= 1152  # an MP3 frame at most


def test_opus_recording_matches_the_source_and_has_its_exact_duration(tmp_path: Path) -> None:
    signal = chirp(2 * 48000 + 77)
    sf.write(str(tmp_path / "chirp.wav"), signal, 48000)
    rec = tmp_path / "rec"

    async def main() -> None:
        async with running_receiver(record_dir=rec) as (_rx, url):
            await Sender(
                SenderConfig(
                    url,
                    name="op",
                    source=f"file:{tmp_path / 'chirp.wav'}",
                    codec="opus",
                    bitrate=96000,
                )
            ).run()

    asyncio.run(main())
    data, rate, _ = read_single(rec, "op-*.wav")
    assert rate == 48000 and len(data) == len(signal)
    lag, peak = best_lag(signal[4800:-4800].astype(float), data[:, 0].astype(float))
    assert abs(lag - 4800) <= 2, "recording is not aligned with the source"
    assert peak > 0.95


def test_file_source_at_another_rate_is_resampled(tmp_path: Path) -> None:
    signal = chirp(44100, 44100)
    sf.write(str(tmp_path / "44k.wav"), signal, 44100)
    rec = tmp_path / "rec"

    async def main() -> None:
        async with running_receiver(record_dir=rec) as (_rx, url):
            await Sender(SenderConfig(url, name="rs", source=f"file:{tmp_path / '44k.wav'}")).run()

    asyncio.run(main())
    data, rate, _ = read_single(rec, "rs-*.wav")
    assert rate == 48000 and abs(len(data) - 48000) <= 2
    import soxr

    expected = soxr.resample(signal.astype(np.float32), 44100, 48000)
    _, peak = best_lag(expected[2000:-2000], data[:, 0].astype(np.float32))
    assert peak > 0.99


def test_many_senders_at_once_each_get_their_own_exact_file(tmp_path: Path) -> None:
    sources = {f"s{i}": noise_file(tmp_path / f"s{i}.wav", 24000 + i, seed=i) for i in range(4)}
    rec = tmp_path / "rec"

    async def main() -> None:
        async with running_receiver(record_dir=rec) as (_rx, url):
            await asyncio.gather(
                *(
                    Sender(SenderConfig(url, name=name, source=f"file:{tmp_path / name}.wav")).run()
                    for name in sources
                )
            )

    asyncio.run(main())
    for name, source in sources.items():
        data, _, _ = read_single(rec, f"{name}-*.wav")
        assert np.array_equal(data, source), name


def test_stopping_the_sender_sends_the_partial_frame_and_ends_cleanly(tmp_path: Path) -> None:
    rec = tmp_path / "rec"

    async def main() -> Any:
        async with running_receiver(record_dir=rec) as (rx, url):
            sender = Sender(SenderConfig(url, name="ctrl-c", source="tone:440", frame_ms=60.0))
            asyncio.get_running_loop().call_later(0.73, sender.stop)  # as Ctrl-C would
            sent = await sender.run()
        return sent, rx.monitor.finished

    sent, reports = asyncio.run(main())
    data, _, _ = read_single(rec, "ctrl-c-*.wav")
    assert len(data) == sent.samples_captured > 0
    assert np.array_equal(data[:, 0], expected_tone(len(data)))
    assert reports[0].outcome.text == "complete"


def test_duration_is_exact(tmp_path: Path) -> None:
    rec = tmp_path / "rec"

    async def main() -> None:
        async with running_receiver(record_dir=rec, formats=("wav", "mp3")) as (_rx, url):
            await Sender(
                SenderConfig(
                    url, name="d", source="tone:1000", duration_s=1.25, codec="opus", frame_ms=40.0
                )
            ).run()

    asyncio.run(main())
    data, _, _ = read_single(rec, "d-*.wav")
    assert len(data) == 60000
    info = sf.info(str(next(rec.glob("d-*.mp3"))))
    assert info.samplerate == 48000 and abs(info.frames - 60000) <= 1152


def test_a_traversal_name_lands_inside_the_record_directory(tmp_path: Path) -> None:
    rec = tmp_path / "deep" / "rec"

    async def main() -> str | None:
        async with running_receiver(record_dir=rec) as (_rx, url):
            sent = await Sender(
                SenderConfig(url, name="../../x", source="tone:440", duration_s=0.1)
            ).run()
        return sent.recording

    recording = asyncio.run(main())
    files = sorted(rec.iterdir())
    assert [f.suffix for f in files] == [".json", ".wav"]  # the recording and its sidecar
    assert files[1].name.startswith("x-") and recording == files[1].name
    assert not list(tmp_path.glob("x-*")) and not list((tmp_path / "deep").glob("x-*"))


def test_same_name_twice_never_overwrites(tmp_path: Path) -> None:
    rec = tmp_path / "rec"

    async def main() -> None:
        async with running_receiver(record_dir=rec) as (_rx, url):
            for _ in range(2):  # within the same second: same time stamp in the name
                await Sender(
                    SenderConfig(url, name="twin", source="tone:440", duration_s=0.1)
                ).run()

    asyncio.run(main())
    assert len(list(rec.glob("twin-*.wav"))) == 2


BAD_CONNECTIONS: list[tuple[str, tuple[Any, ...], int, str]] = [
    ("garbage", (b"\x00\xff garbage",), 1008, "expected the hello as a text message"),
    ("not json", ("{nope",), 1008, "not valid JSON"),
    ("wrong version", (hello(protocol=9),), 1008, "unsupported protocol version 9"),
    ("absurd rate", (hello(rate_hz=10**9),), 1008, "sample rate 1000000000 Hz is out of range"),
    ("absurd channels", (hello(channels=4096),), 1008, "4096 channels is out of range"),
    ("huge hello", ("x" * 100_000,), 1008, "longer than 4096 bytes"),
    ("oversized frame", (hello(), b"\0" * 400_000), 1009, ""),
    ("short frame", (hello(), b"\x01\x00"), 1002, "shorter than the 24-byte header"),
    ("payload mismatch", (hello(), HEADER.pack(1, 0, 960, 0, 0, 0) + b"x"), 1002, "must carry"),
    ("text after hello", (hello(), "hi"), 1002, "got a text message"),
    ("backwards", (hello(), good_packet(960), good_packet(0)), 1002, "went backwards"),
    ("frame version", (hello(), b"\x07" + good_packet()[1:]), 1002, "protocol version 7"),
]


@pytest.mark.parametrize(
    ("what", "messages", "code", "reason"), BAD_CONNECTIONS, ids=[b[0] for b in BAD_CONNECTIONS]
)
def test_bad_connections_are_closed_with_a_clear_code_and_reason(
    tmp_path: Path, what: str, messages: tuple[Any, ...], code: int, reason: str
) -> None:
    async def main() -> tuple[Any, ...]:
        async with running_receiver(record_dir=tmp_path) as (rx, url):
            got = await converse(url, *messages)
            await asyncio.sleep(0.2)
            outcomes = [s.outcome.text for s in rx.monitor.finished]
            return got, list(rx.streams.parked), outcomes, dict(rx.monitor.empty_connections)

    (got_code, got_reason, replies), parked, outcomes, empty = asyncio.run(main())
    assert got_code == code, (what, got_code, got_reason)
    assert reason in got_reason
    if code in (1002, 1009):  # the sender's fault: the stream ends, it is not kept for it
        assert not parked
        if what == "backwards":  # it had audio: a stream, listed as ended
            assert len(outcomes) == 1 and outcomes[0].startswith("closed: ") and not empty
        else:  # no audio came in: a connection counted, not a stream listed
            assert not outcomes and empty == {"malformed": 1}, (outcomes, empty)
    if code == 1008:  # refusals also answer the hello in-band
        refusal = json.loads(replies[-1])
        assert refusal["type"] == "refuse" and reason in refusal["reason"]


def test_no_hello_in_time_is_refused(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, str]:
        async with running_receiver(hello_timeout_s=0.3) as (_rx, url), connect(url) as ws:
            await ws.wait_closed()
            return ws.close_code, ws.close_reason

    assert asyncio.run(main()) == (1008, "no hello within 0.3 s")


def test_a_full_receiver_says_try_again_and_the_sender_gets_in_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Full is a refusal for now (1013, retry): a waiting sender keeps capturing, gets in
    when a slot frees, and delivers everything it captured meanwhile."""

    async def main() -> tuple[int | None, str, list[Any]]:
        async with running_receiver(max_streams=1, record_dir=tmp_path) as (_rx, url):
            first = Sender(SenderConfig(url, name="a", source="tone:440", duration_s=1.0))
            task = asyncio.create_task(first.run())
            await asyncio.sleep(0.3)
            raw = await converse(url, hello(stream="raw"))
            second = await Sender(
                SenderConfig(url, name="b", source="tone:440", duration_s=0.5)
            ).run()
            assert second.confirmed == second.samples_captured == 24000
            await task
            return raw

    code, reason, replies = asyncio.run(main())
    assert (code, reason) == (1013, "receiver is full (1 streams)")
    assert json.loads(replies[-1]) == {
        "type": "refuse",
        "reason": "receiver is full (1 streams)",
        "retry": True,
    }
    assert "receiver is full (1 streams); trying again" in caplog.text
    data, _, _ = read_single(tmp_path, "b-*.wav")
    assert np.array_equal(data[:, 0], expected_tone(24000))


def test_hostile_traffic_does_not_disturb_a_good_stream(tmp_path: Path) -> None:
    source = noise_file(tmp_path / "good.wav", 3 * 48000)
    rec = tmp_path / "rec"

    async def attack(url: str, rounds: int, who: int) -> list[tuple[int | None, int]]:
        results = []
        for i in range(rounds):
            _what, messages, code, _reason = BAD_CONNECTIONS[i % len(BAD_CONNECTIONS)]
            # a name of its own: a name in use would be refused for now (1013), by design
            unique = [
                m.replace('"stream": "bad"', f'"stream": "bad-{who}-{i}"')
                if isinstance(m, str)
                else m
                for m in messages
            ]
            got, _, _ = await converse(url, *unique)
            results.append((got, code))
        return results

    async def main() -> Any:
        async with running_receiver(record_dir=rec) as (rx, url):
            good = asyncio.create_task(
                Sender(SenderConfig(url, name="good", source=f"file:{tmp_path / 'good.wav'}")).run()
            )
            results = await asyncio.gather(*(attack(url, 500, k) for k in range(4)))
            sent = await good
        return sent, results, rx.monitor.finished

    sent, results, reports = asyncio.run(main())
    closes = [r for batch in results for r in batch]
    assert len(closes) == 2000 and all(got == want for got, want in closes)
    data, _, _ = read_single(rec, "good-*.wav")
    assert np.array_equal(data, source)
    assert sent.link_lost_samples == 0 and sent.confirmed == sent.samples_captured
    good = [r for r in reports if r.name == "good"]
    assert good[0].outcome.text == "complete"


def test_sender_reports_unreachable_receiver() -> None:
    async def main() -> None:
        await Sender(SenderConfig("ws://127.0.0.1:9", source="tone:440", reconnect=False)).run()

    with pytest.raises(
        TransportError,
        match=r"cannot reach the receiver at ws://127.0.0.1:9 .*"
        r"is `micwire receive` running there\?",
    ):
        asyncio.run(main())


def test_receiver_shutdown_finalises_the_recording_and_tells_the_sender(tmp_path: Path) -> None:
    rec = tmp_path / "rec"

    async def main() -> None:
        receiver = Receiver(ReceiverConfig(host="127.0.0.1", port=0, play=False, record_dir=rec))
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(receiver.run(stop, ready.set_result))
        url = f"ws://127.0.0.1:{await ready}"
        asyncio.get_running_loop().call_later(1.0, stop.set)
        with pytest.raises(TransportError, match="receiver closed the connection"):
            await Sender(SenderConfig(url, name="cut", source="tone:440", reconnect=False)).run()
        await serving

    asyncio.run(main())
    data, rate, _ = read_single(rec, "cut-*.wav")
    assert rate == 48000 and 0.7 * 48000 < len(data) < 1.3 * 48000


def test_a_token_is_checked_before_the_websocket_upgrade(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus

    async def main() -> None:
        async with running_receiver(record_dir=tmp_path, token="s3cret") as (_rx, url):
            # the scheme is case-insensitive (RFC 7235); two Authorization headers are a
            # plain refusal, not a server error
            async with connect(url, additional_headers={"Authorization": "bearer s3cret"}):
                pass
            with pytest.raises(InvalidStatus) as twice:
                await connect(
                    url,
                    additional_headers=[
                        ("Authorization", "Bearer s3cret"),
                        ("Authorization", "Bearer s3cret"),
                    ],
                )
            assert twice.value.response.status_code == 401
            for token in (None, "wrong", "s3cret!"):
                with pytest.raises(TransportError, match=r"wants a valid token \(HTTP 401\)"):
                    await Sender(SenderConfig(url, source="tone:440", token=token)).run()
            with pytest.raises(InvalidStatus) as raw:  # a plain client: HTTP 401, no upgrade
                await connect(url)
            assert raw.value.response.status_code == 401
            assert raw.value.response.headers["WWW-Authenticate"].startswith("Bearer")
            await Sender(
                SenderConfig(url, name="ok", source="tone:440", duration_s=0.2, token="s3cret")
            ).run()

    asyncio.run(main())
    assert {p.name.split("-")[0] for p in tmp_path.iterdir()} == {"ok"}


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "micwire test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_with_a_trusted_certificate_and_refusal_of_an_untrusted_one(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    rec = tmp_path / "rec"

    async def main() -> None:
        async with running_receiver(record_dir=rec, certfile=cert, keyfile=key) as (_rx, url):
            wss = url.replace("ws://", "wss://")
            with pytest.raises(
                TransportError, match=r"does not trust .* pass its CA with --cafile"
            ):
                await Sender(SenderConfig(wss, source="tone:440")).run()
            await Sender(
                SenderConfig(wss, name="tls", source="tone:440", duration_s=0.3, cafile=cert)
            ).run()

    asyncio.run(main())
    data, _, _ = read_single(rec, "tls-*.wav")
    assert len(data) == 14400


def test_sidecar_describes_the_recording_and_its_gaps(tmp_path: Path) -> None:
    """A sender whose first 2 packets and 3 middle packets never made it (as a full send
    queue would drop them): the recording keeps time with exact silence, listed in the
    sidecar."""
    rec = tmp_path / "rec"
    params = StreamParams("pcm", 8000, 1, 20.0)

    async def main() -> None:
        async with running_receiver(record_dir=rec) as (_rx, url):
            hello_text = Hello("gappy", params, 1_795_000_000_000_000, 0).serialize()
            frames = [
                Packet(i, 160 * i, 160, np.full(160, i, "<i2").tobytes()).serialize()
                for i in (2, 3, 4, 8, 9)
            ]
            last = Packet(10, 1600, 0, b"", flags=1).serialize()
            code, _, _ = await converse(url, hello_text, *frames, last)
            assert code == 1000

    asyncio.run(main())
    data, _, path = read_single(rec, "gappy-*.wav")
    assert len(data) == 1600 and not data[:320].any() and not data[800:1280].any()
    assert data[320, 0] == 2 and data[1280, 0] == 8
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["gaps"] == [{"at_sample": 0, "samples": 320}, {"at_sample": 800, "samples": 480}]
    assert (sidecar["samples"], sidecar["rate_hz"], sidecar["codec"]) == (1600, 8000, "pcm")
    assert sidecar["outcome"] == "complete" and sidecar["files"] == [path.name]
    assert sidecar["start_utc"].startswith("2026-11-18T")


def test_nobody_can_take_over_a_live_stream_by_its_name_or_id(tmp_path: Path) -> None:
    """A name in use is refused for now (1013), with or without the stream's id, with a
    guessed secret too; the first stream is not disturbed. A second sender with that name
    waits (capturing) and gets in when the first ends."""

    async def main() -> list[tuple[int | None, str, list[Any]]]:
        async with running_receiver(record_dir=tmp_path) as (_rx, url):
            first = Sender(SenderConfig(url, name="dup", source="tone:440", duration_s=1.5))
            task = asyncio.create_task(first.run())
            await asyncio.sleep(0.5)
            attempts = [
                await converse(url, hello(stream="dup")),
                await converse(url, hello(stream="dup", stream_id=first.stream_id)),
                await converse(
                    url,
                    hello(
                        stream="dup",
                        stream_id=first.stream_id,
                        resuming=True,
                        resume_secret="guessed",
                    ),
                ),
            ]
            second = Sender(SenderConfig(url, name="dup", source="tone:440", duration_s=0.3))
            sent = await second.run()
            assert sent.confirmed == sent.samples_captured == 14400
            sent_first = await task
            assert sent_first.confirmed == sent_first.samples_captured == 72000
            return attempts

    for code, reason, _ in asyncio.run(main()):
        assert code == 1013 and "stream name 'dup' is in use by another sender" in reason
    lengths = sorted(len(sf.read(str(p))[0]) for p in tmp_path.glob("dup-*.wav"))
    assert lengths == [14400, 72000]
    sidecars = [json.loads(p.read_text()) for p in tmp_path.glob("dup-*.json")]
    assert sorted(s["outcome"] for s in sidecars) == ["complete", "complete"]


def test_names_are_identities_even_where_their_file_names_meet(tmp_path: Path) -> None:
    """`a/b` and `a?b` (and names in other scripts) are different streams: both record,
    to file names made unique."""

    async def main() -> None:
        async with running_receiver(record_dir=tmp_path) as (_rx, url):
            senders = [
                Sender(SenderConfig(url, name=name, source="tone:440", duration_s=0.5))
                for name in ("a/b", "a?b", "кухня", "спальня")
            ]
            for sent in await asyncio.gather(*(s.run() for s in senders)):
                assert sent.confirmed == sent.samples_captured == 24000

    asyncio.run(main())
    sidecars = {json.loads(p.read_text())["stream"]: p for p in tmp_path.glob("*.json")}
    assert set(sidecars) == {"a/b", "a?b", "кухня", "спальня"}
    assert sidecars["кухня"].name.startswith("кухня-")
    assert len(list(tmp_path.glob("a_b-*.wav"))) == 2


@pytest.mark.parametrize("codec", ["pcm", "opus"])
def test_connection_cuts_lose_nothing_from_the_recording(tmp_path: Path, codec: str) -> None:
    """The link drops three times mid-stream (reset, no close): the sender keeps capturing,
    reconnects, the receiver resumes the same file and the sender resends what it lacks."""
    from proxy import ImpairmentProxy

    source = noise_file(tmp_path / "src.wav", 5 * 48000 + 11) if codec == "pcm" else None
    if codec == "opus":
        sf.write(str(tmp_path / "src.wav"), chirp(5 * 48000 + 11), 48000)
    rec = tmp_path / "rec"

    async def main() -> Any:
        async with (
            running_receiver(record_dir=rec) as (rx, url),
            ImpairmentProxy(int(url.rsplit(":", 1)[1])) as proxy,
        ):
            sender = Sender(
                SenderConfig(
                    proxy.url,
                    name="blips",
                    codec=codec,
                    bitrate=96000,  # enough for the waveform to be compared
                    source=f"file:{tmp_path / 'src.wav'}",
                )
            )
            task = asyncio.create_task(sender.run())
            for wait in (1.0, 1.2, 1.3):  # cuts at about 1.0, 2.2 and 3.5 s
                await asyncio.sleep(wait)
                proxy.cut()
            sent = await task
        return sent, rx.monitor.finished, proxy.connections

    sent, reports, connections = asyncio.run(main())
    assert (
        sent.reconnects == 3
        and connections == 4
        and sent.link_lost_samples == 0
        and sent.confirmed == sent.samples_captured
    )
    assert (
        len(reports) == 1 and reports[0].reconnects == 3 and reports[0].outcome.text == "complete"
    )
    assert reports[0].stats().gap_samples == 0
    data, _, _ = read_single(rec, "blips-*.wav")
    if codec == "pcm":
        assert np.array_equal(data, source)
    else:
        # every 100 ms in place and like the source: each reconnect started a fresh encoder
        # where the recording ended, with no gap, no overlap and no burst at the seam
        assert len(data) == 5 * 48000 + 11
        got, want = data[:, 0].astype(float), chirp(5 * 48000 + 11).astype(float)
        for start in range(0, len(want) - 4800, 4800):
            window = slice(start, start + 4800)
            assert np.corrcoef(got[window], want[window])[0, 1] > 0.95, start / 48000


def test_stopped_while_the_receiver_is_gone_gives_up_and_says_so(tmp_path: Path) -> None:
    async def main() -> None:
        receiver = Receiver(
            ReceiverConfig(host="127.0.0.1", port=0, play=False, record_dir=tmp_path)
        )
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(receiver.run(stop, ready.set_result))
        url = f"ws://127.0.0.1:{await ready}"
        sender = Sender(SenderConfig(url, name="orphan", source="tone:440", finish_timeout_s=1.0))
        task = asyncio.create_task(sender.run())
        await asyncio.sleep(0.8)
        stop.set()
        await serving
        await asyncio.sleep(0.5)  # the sender is retrying now
        sender.stop()
        with pytest.raises(
            TransportError,
            match=r"did not confirm the stream within 1 s; [\d.]+ s of audio may not have been",
        ):
            await task

    asyncio.run(main())


def test_a_token_sent_in_clear_to_another_machine_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from micwire.sender.link import warn_about_plain_token

    for url, warned in (
        ("ws://studio-pc:8765", True),
        ("ws://10.0.0.5:8765", True),
        ("wss://studio-pc:8765", False),
        ("ws://127.0.0.1:8765", False),
        ("ws://localhost:8765", False),
        ("ws://[::1]:8765", False),
    ):
        caplog.clear()
        with caplog.at_level("WARNING"):
            warn_about_plain_token(SenderConfig(url, token="s3cret"))
        assert ("unencrypted" in caplog.text) is warned, url


def test_mp3_at_a_low_rate_is_aligned_with_the_wav(tmp_path: Path) -> None:
    """8-24 kHz MP3s used to be 1280-1536 samples too long, with 1105 of lead."""
    signal = chirp(2 * 16000 + 5, 16000)
    sf.write(str(tmp_path / "src.wav"), signal, 16000)
    rec = tmp_path / "rec"

    async def main() -> None:
        async with running_receiver(record_dir=rec, formats=("wav", "mp3")) as (_rx, url):
            await Sender(
                SenderConfig(url, name="low", rate_hz=16000, source=f"file:{tmp_path / 'src.wav'}")
            ).run()

    asyncio.run(main())
    wav, _, _ = read_single(rec, "low-*.wav")
    mp3, rate, _ = read_single(rec, "low-*.mp3")
    assert rate == 16000 and len(mp3) == len(wav) == len(signal)
    a, b = mp3[:, 0].astype(float), wav[:, 0].astype(float)
    lags = range(-50, 51)
    scores = [float(np.dot(a[1000 + lag : -1000 + lag], b[1000:-1000])) for lag in lags]
    assert lags[int(np.argmax(scores))] == 0
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_a_sender_kept_waiting_past_the_receivers_backlog_reports_the_start_as_lost(
    tmp_path: Path,
) -> None:
    """A new stream takes at most ``max_backlog_s`` of audio captured before it was
    accepted: a sender kept out longer (a full receiver) must not say "nothing lost"
    about the start the receiver never recorded."""

    async def main() -> Any:
        async with running_receiver(max_streams=1, max_backlog_s=0.5, record_dir=tmp_path) as (
            _rx,
            url,
        ):
            first = asyncio.create_task(
                Sender(SenderConfig(url, name="a", source="tone:440", duration_s=2.0)).run()
            )
            await asyncio.sleep(0.3)
            second = await Sender(
                SenderConfig(url, name="b", source="tone:440", duration_s=6.0)
            ).run()
            await first
            return second

    report = asyncio.run(main())
    data, _, _ = read_single(tmp_path, "b-*.wav")
    sidecar = json.loads(next(tmp_path.glob("b-*.json")).read_text())
    missing = report.samples_captured - len(data)
    assert missing > 24000  # it waited about 1.7 s and the receiver took 0.5 s of it
    assert report.link_lost_samples == missing == sidecar["origin"]
    assert "nothing lost" not in report.summary()


def test_a_version_1_receiver_that_stops_reading_is_found_dead_by_pings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A version 1 receiver sends nothing after its accept (no acknowledgements to watch):
    the sender pings it, and a link where pings go unanswered is taken for dead."""
    from websockets.asyncio.server import serve

    from micwire.common.protocol import Accept
    from micwire.sender import link

    monkeypatch.setattr(link, "PING_INTERVAL_S", 0.5)

    async def stuck_v1_receiver(ws: Any) -> None:
        hello_ = json.loads(await ws.recv())
        await ws.send(Accept(hello_["stream"], None, version=1).serialize())
        await ws.wait_closed()  # reads nothing more: its queue fills, pings go unanswered

    async def main() -> None:
        async with serve(
            stuck_v1_receiver, "127.0.0.1", 0, max_queue=4, close_timeout=0.5
        ) as server:
            port = server.sockets[0].getsockname()[1]
            config = SenderConfig(f"ws://127.0.0.1:{port}", name="old", source="tone:440")
            task = asyncio.create_task(Sender(config).run())
            try:
                for _ in range(100):
                    if "no answer to a ping" in caplog.text:
                        return
                    await asyncio.sleep(0.1)
                raise AssertionError("the dead link was not noticed: " + caplog.text)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    with caplog.at_level(logging.WARNING, logger="micwire.sender"):
        asyncio.run(main())


def test_half_sent_requests_are_closed_and_lock_nobody_out(tmp_path: Path) -> None:
    """Connections that never finish their request headers, or the login form's body (a
    slowloris: a byte now and then), are closed after the hello timeout; a sender
    streaming meanwhile goes on past it, whole."""
    heads = [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\ntoken=",
    ]

    async def half_request(port: int, head: bytes) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(head)
        try:
            while time.monotonic() - started < 10:
                with contextlib.suppress(asyncio.TimeoutError):
                    if await asyncio.wait_for(reader.read(1), 0.3) == b"":
                        return time.monotonic() - started
                writer.write(b"X")
        except ConnectionError:
            return time.monotonic() - started
        finally:
            writer.close()
        return math.inf

    async def main() -> tuple[list[float], SenderReport]:
        async with running_receiver(hello_timeout_s=1.5, record_dir=tmp_path) as (_rx, url):
            sender = Sender(SenderConfig(url, name="past", source="tone:440", duration_s=4.0))
            sending = asyncio.create_task(sender.run())
            port = int(url.rsplit(":", 1)[1])
            held = await asyncio.gather(*(half_request(port, heads[i % 2]) for i in range(20)))
            return held, await sending

    held, report = asyncio.run(main())
    assert all(1.4 < seconds < 4.0 for seconds in held), held
    assert (report.confirmed, report.reconnects) == (4 * 48000, 0)
    data, _, _ = read_single(tmp_path, "past-*.wav")
    assert len(data) == 4 * 48000
