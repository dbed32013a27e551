"""The receiver's web side without a browser: health, metrics (parsed with
prometheus_client's own parser), tokens and the login cookie, downloads with ranges,
listeners (fan-out; a stalled one harms nobody), alerts to a webhook, every module the
pages load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from rig import converse, expected_tone, good_packet, hello, running_receiver, seconds, until
from websockets.asyncio.client import connect

from micwire.common.protocol import HEADER, Packet
from micwire.sender import Sender, SenderConfig


def http(url: str) -> str:
    return url.replace("ws://", "http://")


async def get(url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


def metrics_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def until_recorded(url: str, name: str, samples: int) -> None:
    """Wait until /metrics says the receiver recorded more than ``samples`` of ``name``."""
    key = ("micwire_recorded_samples_total", (("stream", name),))
    deadline = time.monotonic() + seconds(10)
    while metrics_of((await get(http(url) + "/metrics"))[2].decode()).get(key, 0) <= samples:
        assert time.monotonic() < deadline, f"{name!r}: not {samples} samples recorded"
        await asyncio.sleep(0.05)


def test_health_and_metrics_of_a_live_stream(tmp_path: Path) -> None:
    async def main() -> tuple[Any, ...]:
        async with running_receiver(record_dir=tmp_path) as (_rx, url):
            sender = Sender(SenderConfig(url, name="hall", source="tone:440", duration_s=3.0))
            task = asyncio.create_task(sender.run())
            await until_recorded(url, "hall", 48000)  # what the figures below are about
            health = await get(http(url) + "/healthz")
            status, headers, body = await get(http(url) + "/metrics")
            await task
            return health, status, headers, body.decode()

    health, status, headers, text = asyncio.run(main())
    assert health[0] == 200 and json.loads(health[2]) == {"status": "ok", "live": 1, "parked": 0}
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    m = metrics_of(text)
    hall = (("stream", "hall"),)
    assert m[("micwire_packets_total", hall)] > 30
    assert m[("micwire_recorded_samples_total", hall)] > 48000
    assert m[("micwire_gap_samples_total", hall)] == 0
    assert m[("micwire_stream_up", hall)] == 1
    assert -13 < m[("micwire_peak_dbfs", hall)] < -11  # the -12 dBFS tone
    assert m[("micwire_alert", (("alert", "silence"), ("stream", "hall")))] == 0
    assert m[("micwire_streams", (("state", "live"),))] == 1
    assert m[("micwire_received_bytes_total", ())] > 48000 * 2


def test_tokens_guard_everything_but_health(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        async with running_receiver(
            record_dir=tmp_path, token="full-t", listen_token="look-t", send_token="send-t"
        ) as (_rx, url):
            base = http(url)
            out: dict[str, Any] = {"health": (await get(base + "/healthz"))[0]}
            for what, path in (("metrics", "/metrics"), ("api", "/api/streams")):
                out[what] = [
                    (await get(base + path, headers=h))[0]
                    for h in (
                        {},
                        {"Authorization": "Bearer wrong"},
                        {"Authorization": "Bearer send-t"},
                        {"Authorization": "Bearer look-t"},
                        {"Authorization": "bearer full-t"},
                    )
                ]
            page, headers, _ = await get(base + "/", allow_redirects=False)
            out["page"] = (page, headers.get("Location"))
            # a browser logs in with a form; the HttpOnly cookie opens the page and sockets
            jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies for an IP address, as browsers do
            async with aiohttp.ClientSession(cookie_jar=jar) as browser:
                async with browser.post(
                    base + "/login", data={"token": "look-t", "next": "/"}, allow_redirects=False
                ) as r:
                    out["login"] = (r.status, r.headers["Location"], r.headers["Set-Cookie"])
                async with browser.get(base + "/") as r:
                    text = await r.text()
                    out["after_login"] = (r.status, "<html" in text.lower())
                    out["logout"] = 'class="logout">' in text
                for origin, key in ((base, "ws_same_origin"), ("http://evil.example", "ws_evil")):
                    try:
                        async with browser.ws_connect(
                            url + "/api/events", headers={"Origin": origin}
                        ) as ws:
                            first = json.loads((await ws.receive()).data)
                            then = json.loads((await ws.receive()).data)
                            out[key] = (first["type"], first.get("role"), then["type"])
                    except aiohttp.WSServerHandshakeError as exc:
                        out[key] = exc.status
            # the listen token cannot send; the send token can; no token cannot
            for token, key in (("look-t", "send_look"), ("send-t", "send_send"), (None, "none")):
                try:
                    sent = await Sender(
                        SenderConfig(
                            url, name=f"x{key}", source="tone:440", duration_s=0.2, token=token
                        )
                    ).run()
                    out[key] = sent.confirmed
                except Exception as exc:
                    out[key] = str(exc)
            return out

    out = asyncio.run(main())
    assert out["health"] == 200
    assert out["metrics"] == out["api"] == [401, 401, 401, 200, 200]
    assert out["page"] == (303, "/login?next=/")
    status, location, cookie = out["login"]
    assert (status, location) == (303, "/")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "look-t" not in cookie
    assert out["after_login"] == (200, True)
    assert out["logout"]  # logged in: the page offers to log out
    # the page is told what it may do (a listen login: no mix controls), then the figures
    assert out["ws_same_origin"] == ("hello", "listen", "streams") and out["ws_evil"] == 401
    assert "wants a valid token (HTTP 401)" in out["send_look"]
    assert out["send_send"] == 9600
    assert "wants a valid token" in out["none"]


async def log_in(base: str, token: str) -> str:
    """Log in with the form, as a browser would; the cookie's value."""
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
        browser.post(base + "/login", data={"token": token, "next": "/"}, allow_redirects=False),
    ):
        return next(c.value for c in browser.cookie_jar if c.key == "micwire_auth")


async def api_status(base: str, cookie: str) -> int:
    return (await get(base + "/api/streams", cookies={"micwire_auth": cookie}))[0]


def test_each_login_is_its_own_and_log_out_ends_it_everywhere(tmp_path: Path) -> None:
    """A copied cookie used to live until the token changed (every login got the same
    value). Now each login has its own value and expiry; Log out ends that login on this
    receiver, after its restart, and on another receiver sharing the state directory,
    while other logins go on."""
    state = tmp_path / "state"

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with running_receiver(token="t", state_dir=state) as (rx, url):
            base = http(url)
            first, second = await log_in(base, "t"), await log_in(base, "t")
            out["same"] = first == second
            out["before"] = [await api_status(base, c) for c in (first, second)]
            async with (
                aiohttp.ClientSession() as browser,
                browser.post(
                    base + "/logout", cookies={"micwire_auth": first}, allow_redirects=False
                ) as r,
            ):
                out["logout"] = r.status
            out["after"] = [await api_status(base, c) for c in (first, second)]
            # forged: another role, an expiry moved on, a login made long ago
            role, expires, nonce, mac = second.split(".")
            stale = rx.tokens.new_login("full", time.time() - 31 * 24 * 3600)
            out["forged"] = [
                await api_status(base, c)
                for c in (
                    f"listen.{expires}.{nonce}.{mac}",
                    f"{role}.9{expires}.{nonce}.{mac}",
                    stale,
                )
            ]
        async with running_receiver(token="t", state_dir=state) as (_rx, url):  # restarted
            out["restarted"] = [await api_status(http(url), c) for c in (first, second)]
        async with running_receiver(token="other", state_dir=state) as (_rx, url):
            out["other_token"] = [await api_status(http(url), c) for c in (first, second)]
        return out

    out = asyncio.run(main())
    assert not out["same"]
    assert out["before"] == [200, 200] and out["logout"] == 303
    assert out["after"] == [401, 200]
    assert out["forged"] == [401, 401, 401]
    assert out["restarted"] == [401, 200]
    assert out["other_token"] == [401, 401]


def test_without_a_token_the_page_offers_no_log_out(tmp_path: Path) -> None:
    async def main() -> str:
        async with running_receiver() as (_rx, url):
            return (await get(http(url) + "/"))[2].decode()

    page = asyncio.run(main())
    assert 'class="logout" hidden' in page and 'class="logout">' not in page


#: How the pages and their scripts name the modules they load: the page's entry script, a
#: static import (`import { a, b } from './x.js'`), a worklet's URL (`addModule('/static/...')`).
PAGE_SCRIPT = re.compile(r'<script type="module" src="(/static/[^"]+)"')
STATIC_IMPORT = re.compile(r"^import\s*(?:\{([^}]*)\}\s*from\s*)?'\./([^']+)'", re.MULTILINE)
WORKLET_URL = re.compile(r"'(/static/[\w.-]+\.js)'")


def test_every_module_the_pages_load_is_served_with_what_they_import() -> None:
    """The pages are plain ES modules, one job per file: one that is not served, or a name
    imported that its module does not export, leaves the page blank (the browser refuses
    the whole module graph). Follows each page's imports and worklets through the receiver."""

    async def main() -> dict[str, tuple[int, str, str]]:
        served: dict[str, tuple[int, str, str]] = {}
        async with running_receiver() as (_rx, url), aiohttp.ClientSession() as session:

            async def fetch(path: str) -> tuple[int, str, str]:
                async with session.get(http(url) + path) as r:
                    return r.status, r.headers.get("Content-Type", ""), await r.text()

            todo: list[str] = []
            for page in ("/", "/send", "/login"):
                status, _, html = await fetch(page)
                assert status == 200, page
                todo += PAGE_SCRIPT.findall(html)
            while todo:
                path = todo.pop()
                if path not in served:
                    served[path] = await fetch(path)
                    text = served[path][2]
                    todo += [f"/static/{name}" for _, name in STATIC_IMPORT.findall(text)]
                    todo += WORKLET_URL.findall(text)
        return served

    served = asyncio.run(main())
    assert {"/static/app.js", "/static/send.js", "/static/player-worklet.js"} <= set(served)
    missing = {path: status for path, (status, _, _) in served.items() if status != 200}
    assert missing == {}, f"not served: {missing}"
    assert {kind.split(";")[0] for _, kind, _ in served.values()} == {"text/javascript"}
    unexported = [
        f"{path} imports {name} from {module}"
        for path, (_, _, text) in served.items()
        for names, module in STATIC_IMPORT.findall(text)
        for name in filter(None, (n.split(" as ")[0].strip() for n in names.split(",")))
        if not re.search(
            rf"^export (?:const|let|class|(?:async )?function\*?) ?{re.escape(name)}\b",
            served[f"/static/{module}"][2],
            re.MULTILINE,
        )
    ]
    assert unexported == []


def test_a_wrong_password_goes_back_to_the_form(tmp_path: Path) -> None:
    async def main() -> tuple[int, str]:
        async with (
            running_receiver(token="t") as (_rx, url),
            aiohttp.ClientSession() as s,
            s.post(
                http(url) + "/login",
                data={"token": "nope", "next": "//evil.example/x"},
                allow_redirects=False,
            ) as r,
        ):
            return r.status, r.headers["Location"]

    assert asyncio.run(main()) == (303, "/login?error=1&next=/")


def test_recordings_download_with_ranges(tmp_path: Path) -> None:
    async def main() -> tuple[Any, ...]:
        async with running_receiver(record_dir=tmp_path) as (rx, url):
            await Sender(SenderConfig(url, name="dl", source="tone:440", duration_s=1.0)).run()
            (view,) = (await rx.monitor.snapshot())["streams"]
            # an ended stream has no level to show (not a -120 dBFS silence)
            assert view["state"] == "ended" and view["peak_dbfs"] is view["rms_dbfs"] is None
            wav = next(r for r in view["recordings"] if r["name"].endswith(".wav"))
            whole = await get(http(url) + wav["url"])
            part = await get(http(url) + wav["url"], headers={"Range": "bytes=44-1043"})
            none = [
                await get(http(url) + wav["url"], headers={"Range": spec})
                for spec in ("bytes=-0", "Bytes=-0")  # a range unit is case-insensitive
            ]
            traversal = await get(http(url) + "/recordings/..%2F..%2Fetc%2Fpasswd")
            nul = await get(http(url) + "/recordings/%00.wav")  # not a file name at all
            # a symlink in the record directory to a file outside it, and to one inside
            secret = tmp_path.parent / f"{tmp_path.name}-secret.wav"
            secret.write_bytes(b"RIFF not for download")
            (tmp_path / "link.wav").symlink_to(secret)
            (tmp_path / "alias.wav").symlink_to(tmp_path / wav["name"])
            links = [await get(http(url) + f"/recordings/{n}") for n in ("link.wav", "alias.wav")]
            return wav, whole, part, none, traversal, links, nul

    wav, whole, part, none, traversal, links, nul = asyncio.run(main())
    assert [status for status, _, _ in links] == [404, 404]
    path = next(tmp_path.glob("dl-*.wav"))
    assert whole[0] == 200 and whole[2] == path.read_bytes() and wav["bytes"] == len(whole[2])
    assert part[0] == 206 and part[2] == path.read_bytes()[44:1044]
    # the last 0 bytes: nothing to send, and said so (not the whole file as a "part")
    for status, headers, _ in none:
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole[2])}"
    assert "attachment" in whole[1]["Content-Disposition"]
    assert traversal[0] == 404
    assert nul[0] == 404  # (not a 500 with a traceback in the log)


async def listen(url: str, name: str, seconds: float, pcm: bool = False) -> dict[str, Any]:
    """A well-behaved listener: collects its start message and packets."""
    got: dict[str, Any] = {"starts": [], "packets": []}
    query = "?format=pcm" if pcm else ""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}/api/listen/{name}{query}") as ws,
    ):
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await ws.receive(timeout=left)
            except asyncio.TimeoutError:
                break
            if message.type == aiohttp.WSMsgType.TEXT:
                got["starts"].append(json.loads(message.data))
            elif message.type == aiohttp.WSMsgType.BINARY:
                got["packets"].append(Packet.parse(message.data))
            else:
                break
    return got


def test_listeners_get_the_stream_and_a_stalled_one_harms_nobody(tmp_path: Path) -> None:
    """Two listeners and one that never reads, for a PCM stream: the good listeners get
    every packet, the recording is sample-exact, the stalled one only costs itself."""
    duration = 4.0

    async def stalled(url: str) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        writer.write(
            b"GET /api/listen/room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(duration + 2)  # and never reads a byte
        writer.transport.abort()

    async def main() -> tuple[Any, ...]:
        async with running_receiver(record_dir=tmp_path) as (rx, url):
            sender = Sender(SenderConfig(url, name="room", source="tone:440", duration_s=duration))
            task = asyncio.create_task(sender.run())
            await until(lambda: "room" in rx.streams.live, "'room' is not live")
            results = await asyncio.gather(
                listen(url, "room", duration + 1),
                listen(url, "room", duration + 1, pcm=True),
                stalled(url),
                task,
            )
            return results[0], results[1], results[3]

    opus_listener, pcm_listener, sent = asyncio.run(main())
    assert sent.confirmed == sent.samples_captured == duration * 48000
    for got in (opus_listener, pcm_listener):
        assert got["starts"][0]["type"] == "start" and got["starts"][0]["codec"] == "pcm"
        audio = np.concatenate(
            [np.frombuffer(p.payload, "<i2") for p in got["packets"] if p.samples]
        )
        first = got["packets"][0].timestamp
        # everything from when it joined, in order, sample for sample
        assert np.array_equal(audio, expected_tone(int(duration * 48000))[first:])
    data, _ = sf.read(str(next(tmp_path.glob("room-*.wav"))), dtype="int16")
    assert np.array_equal(data, expected_tone(int(duration * 48000)))


def test_a_listener_that_stops_reading_is_cut_off_after_the_stall_time(tmp_path: Path) -> None:
    """Its connection holds a fraction of a second of audio, so "not reading for S s" is
    seen after S s: Linux let a listener's send buffer grow to 2.8 MB (29 s of PCM) before
    the receiver's queue saw anything, and the 10 s cut-off came after 40-45 s."""
    stall_s, duration = 2.0, 14.0
    seen: dict[str, float] = {}

    async def stops_reading(rx: Any, url: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        writer.write(
            b"GET /api/listen/room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        got = 0
        while got < 48000:  # a listener for a while: the handshake and half a second
            got += len(await reader.read(65536))
        seen["stopped"] = time.monotonic()  # and not a byte more from here on
        stream = rx.streams.live["room"]
        deadline = seen["stopped"] + seconds(duration)
        while stream.listeners and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not stream.listeners:
            seen["cut"] = time.monotonic()
        writer.transport.abort()

    async def main() -> Any:
        async with running_receiver(record_dir=tmp_path, listener_stalled_s=stall_s) as (rx, url):
            sender = Sender(SenderConfig(url, name="room", source="tone:440", duration_s=duration))
            task = asyncio.create_task(sender.run())
            while "room" not in rx.streams.live:
                await asyncio.sleep(0.02)
            await stops_reading(rx, url)
            return await task

    sent = asyncio.run(main())
    assert "cut" in seen, f"still connected {duration:g} s after it stopped reading"
    # the stall time, plus what the listener's queue (1 s) and the connection hold on our
    # side (0.5 s), what the listener's own receive buffer took (measured: 3-4 s here) and
    # the once-a-second check
    assert seen["cut"] - seen["stopped"] < stall_s + seconds(7), seen
    assert sent.confirmed == sent.samples_captured == duration * 48000


def test_listeners_beyond_the_limit_are_told_so(tmp_path: Path) -> None:
    async def main() -> tuple[int, bytes]:
        async with running_receiver(record_dir=tmp_path, max_listeners=1) as (rx, url):
            task = asyncio.create_task(
                Sender(SenderConfig(url, name="hall", source="tone:440", duration_s=2.0)).run()
            )
            while "hall" not in rx.streams.live:
                await asyncio.sleep(0.02)
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(http(url) + "/api/listen/hall"),
            ):
                status, _, body = await get(http(url) + "/api/listen/hall")
            await task
            return status, body

    status, body = asyncio.run(main())
    assert status == 503 and b"--max-listeners" in body, body


def test_connections_without_audio_are_counted_not_listed(tmp_path: Path) -> None:
    """A bare hello, or one malformed packet, is not a stream: anyone with a send token
    could fill the page with ENDED rows and DOWN alerts. They are counted in /metrics and
    logged; and a bare hello does not hold the name it asked for."""

    async def main() -> tuple[Any, ...]:
        async with running_receiver(record_dir=tmp_path, down_s=0.3) as (rx, url):
            async with connect(url, compression=None) as ws:  # a bare hello, kept open
                await ws.send(hello(stream="kit", stream_id="junk", protocol=2))
                await ws.recv()
                _, _, body = await get(http(url) + "/api/streams")
                while_open = [v["stream"] for v in json.loads(body)["streams"]]
            bad = Packet(0, 0, 960, b"\0" * 10).serialize()  # claims 960 samples, has 5
            code, _, _ = await converse(url, hello(stream="bogus", protocol=2), bad)
            # the name the bare hello asked for is free at once for a real sender
            kit = Sender(SenderConfig(url, name="kit", source="tone:440", duration_s=0.5))
            kit_report = await kit.run()
            # a real stream whose sender vanishes: its DOWN alert shows the tick has run
            task = asyncio.create_task(
                Sender(SenderConfig(url, name="room", source="tone:440", duration_s=9)).run()
            )
            while "room" not in rx.streams.live or not rx.streams.live["room"].has_audio:
                await asyncio.sleep(0.02)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            deadline = time.monotonic() + seconds(10)
            while time.monotonic() < deadline:
                _, _, body = await get(http(url) + "/api/streams")
                views = json.loads(body)["streams"]
                if any(v["stream"] == "room" and v["alerts"] for v in views):
                    break
                await asyncio.sleep(0.1)
            _, _, text = await get(http(url) + "/metrics")
            return while_open, code, kit_report, views, text.decode()

    while_open, code, kit_report, views, text = asyncio.run(main())
    assert while_open == []
    assert code == 1002
    assert kit_report.confirmed == kit_report.samples_captured == 24000
    assert sorted(v["stream"] for v in views) == ["kit", "room"]
    assert [a["kind"] for v in views if v["stream"] == "room" for a in v["alerts"]] == ["down"]
    m = metrics_of(text)
    assert m[("micwire_connections_without_audio_total", (("kind", "left"),))] == 1
    assert m[("micwire_connections_without_audio_total", (("kind", "malformed"),))] == 1
    assert not any(labels == (("stream", "bogus"),) for _, labels in m)


def test_bytes_sent_to_listeners_only_ever_grow(tmp_path: Path) -> None:
    """micwire_sent_bytes_total is a counter: what a listener got still counts once it
    left, and once its stream ended (Prometheus would take a drop for a restart)."""

    async def sent_bytes(url: str) -> float:
        _, _, body = await get(http(url) + "/metrics")
        return metrics_of(body.decode())[("micwire_sent_bytes_total", ())]

    async def main() -> tuple[dict[str, Any], list[float]]:
        async with running_receiver(record_dir=tmp_path) as (rx, url):
            sender = Sender(SenderConfig(url, name="hall", source="tone:440", duration_s=3.0))
            task = asyncio.create_task(sender.run())
            await until(lambda: "hall" in rx.streams.live, "'hall' is not live")
            got = await listen(url, "hall", 1.0)
            await until(lambda: not rx.streams.live["hall"].listeners, "the listener is not gone")
            seen = [await sent_bytes(url)]  # the listener left, the stream goes on
            await task
            seen.append(await sent_bytes(url))  # the stream ended
            return got, seen

    got, seen = asyncio.run(main())
    audio = sum(HEADER.size + len(p.payload) for p in got["packets"])
    assert audio > 48000 * 2 * 0.8  # it heard most of a second
    assert seen[0] >= audio and seen[1] == seen[0], seen


def test_an_opus_stream_can_be_listened_to_as_pcm(tmp_path: Path) -> None:
    async def main() -> tuple[Any, ...]:
        async with running_receiver(record_dir=tmp_path) as (rx, url):
            task = asyncio.create_task(
                Sender(
                    SenderConfig(url, name="op", source="tone:440", codec="opus", duration_s=2.0)
                ).run()
            )
            await until(lambda: "op" in rx.streams.live, "'op' is not live")
            opus, pcm = await asyncio.gather(listen(url, "op", 2.5), listen(url, "op", 2.5, True))
            await task
            return opus, pcm

    opus, pcm = asyncio.run(main())
    assert opus["starts"][0]["codec"] == "opus" and opus["starts"][0]["pre_skip"] > 0
    assert pcm["starts"][0]["codec"] == "pcm"
    audio = np.concatenate([np.frombuffer(p.payload, "<i2") for p in pcm["packets"]])
    spectrum = np.abs(np.fft.rfft(audio[:48000] * np.hanning(len(audio[:48000]))))
    assert abs(np.argmax(spectrum) * 48000 / len(audio[:48000]) - 440) < 3
    assert len(opus["packets"]) > 60 and all(len(p.payload) < 400 for p in opus["packets"])
    assert all(HEADER.size + len(p.payload) > HEADER.size for p in pcm["packets"])


@asynccontextmanager
async def webhook_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


async def until_alerts(rx: Any) -> list[dict[str, Any]]:
    """The alerts of the receiver's only stream, once it has any."""
    deadline = time.monotonic() + seconds(10)
    while True:
        streams = (await rx.monitor.snapshot())["streams"]
        if streams and streams[0]["alerts"]:
            alerts: list[dict[str, Any]] = streams[0]["alerts"]
            return alerts
        assert time.monotonic() < deadline, f"no alert was raised: {streams}"
        await asyncio.sleep(0.05)


def test_silence_raises_an_alert_that_reaches_the_webhook_and_clears(tmp_path: Path) -> None:
    """A source that is silent for 3 s, then plays: with --silence-s 1, `silence` is raised
    (page, metrics, webhook) and cleared when the sound comes back."""
    signal = np.concatenate([np.zeros(3 * 48000, np.int16), expected_tone(3 * 48000)])
    sf.write(str(tmp_path / "src.wav"), signal, 48000)

    async def main() -> tuple[Any, ...]:
        async with (
            webhook_server() as (hook, received),
            running_receiver(silence_s=1.0, webhook=hook) as (rx, url),
        ):
            task = asyncio.create_task(
                Sender(SenderConfig(url, name="mute", source=f"file:{tmp_path / 'src.wav'}")).run()
            )
            during = await until_alerts(rx)  # in the 3 s of silence, after 1 s of it
            _, _, body = await get(http(url) + "/metrics")
            await task
            await until(lambda: len(received) >= 2, "the alert was not cleared at the webhook")
        return during, metrics_of(body.decode()), received

    during, m, received = asyncio.run(main())
    assert [a["kind"] for a in during] == ["silence"]
    assert m[("micwire_alert", (("alert", "silence"), ("stream", "mute")))] == 1
    assert [(e["alert"], e["state"]) for e in received][:2] == [
        ("silence", "raised"),
        ("silence", "cleared"),
    ]
    assert received[0]["stream"] == "mute" and "below -60 dBFS" in received[0]["message"]


def test_no_web_serves_senders_only(tmp_path: Path) -> None:
    async def main() -> tuple[int, int, int | None]:
        async with running_receiver(record_dir=tmp_path, web=False) as (_rx, url):
            page = (await get(http(url) + "/"))[0]
            health = (await get(http(url) + "/healthz"))[0]
            sent = await Sender(
                SenderConfig(url, name="w", source="tone:440", duration_s=0.2)
            ).run()
            return page, health, sent.confirmed

    assert asyncio.run(main()) == (404, 200, 9600)


def test_another_site_cannot_open_sockets_even_without_a_token(tmp_path: Path) -> None:
    """Without --token anyone on the network may watch; but a page on another site, open
    in a visitor's browser, must not list, listen to or send into the receiver."""

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with running_receiver() as (_rx, url), aiohttp.ClientSession() as s:
            base = http(url)
            for path in ("/api/events", "/api/listen/x", "/", "/stream/x"):
                for origin in (None, base, "http://evil.example"):
                    headers = {"Origin": origin} if origin else {}
                    try:
                        async with s.ws_connect(url + path, headers=headers) as ws:
                            await ws.close()
                            out[path, origin] = "open"
                    except aiohttp.WSServerHandshakeError as exc:
                        out[path, origin] = exc.status
            async with s.post(
                base + "/login",
                data={"token": "", "next": "/\t/evil.example"},
                allow_redirects=False,
            ) as r:
                out["next"] = r.headers["Location"]
        return out

    out = asyncio.run(main())
    for path in ("/api/events", "/", "/stream/x"):
        assert out[path, None] == "open", path  # senders and scripts send no Origin
        assert out[path, "http://evil.example"] == 401, path
    assert (
        sum(v == "open" for k, v in out.items() if k[1] not in (None, "http://evil.example")) == 3
    )
    assert out["/api/listen/x", "http://evil.example"] == 401
    assert "evil" not in out["next"]


def test_a_down_room_clears_when_a_new_stream_of_its_name_starts(tmp_path: Path) -> None:
    """A stream the receiver closed (a malformed packet) is down after --down-s, on the
    page and at the webhook; when the room streams again under its name, the old stream's
    alert is cleared (a webhook consumer must not keep it open for good)."""

    async def main() -> list[dict[str, Any]]:
        async with (
            webhook_server() as (hook, received),
            running_receiver(down_s=1.0, webhook=hook) as (_rx, url),
        ):
            await converse(url, hello(stream="hall"), good_packet(), b"\x01\x00")  # 1002
            await until(lambda: received, "no down alert reached the webhook")
            sender = Sender(SenderConfig(url, name="hall", source="tone:440", duration_s=2.0))
            await sender.run()
            await until(lambda: len(received) >= 2, "the down alert was not cleared")
        return received

    received = asyncio.run(main())
    assert [(e["alert"], e["state"], e["stream"]) for e in received] == [
        ("down", "raised", "hall"),
        ("down", "cleared", "hall"),
    ], received
