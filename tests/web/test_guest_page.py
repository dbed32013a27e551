"""The guest page (``/send``) in a real browser: a browser is a sender.

Headless Chromium's fake microphone plays a known WAV (a 40 s logarithmic sweep with
band-limited noise, so every offset into it is unambiguous). The page
streams it to a real receiver that records WAV, and the recording is compared with the
file: aligned correlation, exact length, no gaps, also across a 5 s network cut made by a
TCP proxy (tests/integration/proxy.py) that the page itself is loaded through.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from browser import browser_page
from proxy import ProxyThread
from rig import Micwire, read_single, receiver, seconds
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

RATE = 48000
#: Longer than any test runs: Chromium's fake device does not loop its file seamlessly
#: (a few hundred samples go missing at each wrap), which would read as a gap.
MIC_SECONDS = 40
FRAME = RATE // 50  # the page's 20 ms frames
ENDED = "() => ['delivered', 'undelivered', 'failed'].includes(window.micwireSend.state)"


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 kHz mono: a sweep 200 Hz -> 3 kHz plus band-limited noise."""
    n = MIC_SECONDS * RATE
    t = np.arange(n) / RATE
    k = np.log(3000 / 200) / MIC_SECONDS
    sweep = np.sin(2 * np.pi * 200 * (np.exp(k * t) - 1) / k)
    spectrum = np.fft.rfft(np.random.default_rng(7).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 5000)] = 0
    noise = np.fft.irfft(spectrum, n)
    signal_ = 0.3 * sweep + 0.15 * noise / np.abs(noise).max()
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(str(path), np.rint(signal_ * 32767).astype(np.int16), RATE, subtype="PCM_16")
    return path


@contextmanager
def recording_receiver(rec: Path, *extra: str) -> Iterator[tuple[Micwire, int]]:
    rx, port = receiver("--no-play", "--record", str(rec), "--format", "wav", *extra)
    try:
        yield rx, port
    finally:
        rx.signal(signal.SIGINT)
        rx.wait()


def page_errors(page: Any) -> list[str]:
    """Uncaught errors in the page (console errors are not collected: Chromium logs every
    failed WebSocket handshake there, which a cut is meant to cause)."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def open_guest_page(page: Any, query: str) -> None:
    page.goto(f"/send?{query}")
    page.wait_for_function("() => window.micwireSend !== undefined", timeout=seconds(10) * 1000)
    page.evaluate("() => window.micwireSend.ready()")


def stats(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("() => window.micwireSend.stats()")
    return result


def stop_and_wait(page: Any, timeout_s: float = 40) -> dict[str, Any]:
    page.evaluate("() => window.micwireSend.stop()")
    page.wait_for_function(ENDED, timeout=seconds(timeout_s) * 1000)
    return stats(page)


def wait_for_level(page: Any) -> None:
    """As a guest would: start once the level meter moves."""
    page.wait_for_function(
        "() => parseFloat(document.getElementById('meter-peak').dataset.db) > -30",
        timeout=seconds(10) * 1000,
    )


def wait_for_audio(page: Any, audio_s: float) -> None:
    page.wait_for_function(
        "(n) => window.micwireSend.stats().capturedSamples >= n",
        arg=round(audio_s * RATE),
        timeout=seconds(audio_s + 10) * 1000,
    )


def captured(page: Any) -> np.ndarray:
    """Everything the page captured (its spool holds it all in these tests), mono."""
    spooled = page.evaluate("() => window.micwireSend.spooled()")
    assert spooled["start"] == 0, spooled["start"]
    return np.frombuffer(base64.b64decode(spooled["pcm"]), "<i2").astype(np.int16)


def _xcorr(ref: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Cross-correlation of ``window`` at every offset into ``ref`` (FFT)."""
    size = 1 << (len(ref) + len(window)).bit_length()
    spectrum = np.fft.rfft(ref, size) * np.conj(np.fft.rfft(window, size))
    return np.fft.irfft(spectrum, size)[: len(ref) - len(window) + 1]


def window_fits(
    recording: np.ndarray, source: np.ndarray, start: int, search: int, window_s: float = 0.5
) -> list[tuple[int, float]]:
    """For each window of the recording: the shift (within ±``search`` samples of
    ``source[start + i]``) where it fits ``source`` best, and the normalised correlation."""
    window = int(window_s * RATE)
    out = []
    for at in range(0, len(recording) - window + 1, window):
        piece = recording[at : at + window].astype(float)
        lo = max(0, start + at - search)
        ref = source[lo : start + at + search + window].astype(float)
        corr = _xcorr(ref, piece)
        best = int(np.argmax(corr))
        seg = ref[best : best + window]
        norm = float(np.linalg.norm(seg) * np.linalg.norm(piece)) or 1.0
        out.append((lo + best - (start + at), float(np.dot(seg, piece)) / norm))
    return out


def matches_mic(recording: np.ndarray, mic: np.ndarray, minimum: float) -> list[tuple[int, float]]:
    """The recording is the fake microphone's file: found in it (from its middle), and every
    half second correlates there. Small jumps are allowed: under load, Chromium's capture
    path itself now and then drops or repeats 10 ms (the page sends what it gets: see
    :func:`same_as_captured`)."""
    middle = len(recording) // 2
    piece = recording[middle : middle + RATE].astype(float)
    looped = np.concatenate([mic, mic[:RATE]]).astype(float)
    start = (int(np.argmax(_xcorr(looped, piece)[: len(mic)])) - middle) % len(mic)
    source = np.tile(mic, 2 + len(recording) // len(mic))
    fits = window_fits(recording, source, start + 2 * RATE, 2 * RATE)  # (±2 s)
    good = sorted(c for _, c in fits)
    # each jump spoils the half second around it: a quarter of them may be spoilt on a
    # loaded machine (seen: several jumps in 10 s while other tests ran)
    assert good[len(good) // 2] > minimum and good[len(good) // 4] > minimum - 0.1, fits
    return fits


def same_as_captured(recording: np.ndarray, capture: np.ndarray, codec: str) -> None:
    """The recording is what the page captured: PCM sample for sample, Opus in place (to
    the codec's phase wobble of a few samples) all the way through."""
    assert len(recording) == len(capture), (len(recording), len(capture))
    if codec == "pcm":
        differ = np.flatnonzero(recording != capture)
        assert not len(differ), f"{len(differ)} samples differ, the first at {differ[:5]}"
        return
    fits = window_fits(recording, capture, 0, 16)
    # from 0.5 s on: a new Opus encoder takes a moment to settle on its mode (which is why a
    # resumed codec stream starts 0.5 s early, so a seam is checked like the rest)
    assert all(abs(shift) <= 3 and corr > 0.9 for shift, corr in fits[1:]), fits


def check_recording(rec: Path, page_stats: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The one recording: as long as the page captured, its sidecar agrees, no gaps."""
    data, rate, _ = read_single(rec, "guest-*.wav")
    sidecar = json.loads(next(rec.glob("guest-*.json")).read_text())
    assert rate == RATE and data.shape[1] == page_stats["channels"]
    assert sidecar["samples"] == len(data)
    assert abs(len(data) - page_stats["capturedSamples"]) <= FRAME, (len(data), page_stats)
    assert sidecar["gaps"] == [] and sidecar["outcome"] == "complete", sidecar
    return data[:, 0], sidecar


@pytest.mark.parametrize("codec", ["pcm", "opus"])
def test_a_guest_streams_from_the_page_and_the_recording_matches(
    codec: str, mic_wav: Path, tmp_path: Path
) -> None:
    rec = tmp_path / "rec"
    mic = sf.read(str(mic_wav), dtype="int16")[0]
    with (
        recording_receiver(rec) as (_, port),
        browser_page(f"http://127.0.0.1:{port}", fake_mic_wav=mic_wav) as page,
    ):
        errors = page_errors(page)
        open_guest_page(page, f"name=guest&codec={codec}")
        assert page.input_value("#name") == "guest"
        wait_for_level(page)  # the level meter moves before going live
        page.click("#start")
        page.wait_for_function("() => window.micwireSend.state === 'live'")
        wait_for_audio(page, 8)
        live = stats(page)
        assert live["codec"] == codec and live["lostSamples"] == 0
        assert live["waitingSeconds"] < 1.0, live  # it keeps up
        assert live["ackedSamples"] > 4 * RATE  # and the receiver confirms as it goes
        final = stop_and_wait(page)
        assert final["state"] == "delivered", final
        assert final["status"].startswith("everything delivered"), final
        assert page.inner_text("#status").startswith("everything delivered")
        assert final["confirmedSamples"] == final["capturedSamples"]
        assert not errors, errors
        capture = captured(page)
    recording, sidecar = check_recording(rec, final)
    assert sidecar["codec"] == codec
    # the page answered the receiver's pings: its clock was measured (the same machine's)
    clock = sidecar["sender_clock"]
    assert clock["exchanges"] >= 2 and abs(clock["offset_ms"]) <= clock["bound_ms"] + 1, clock
    assert len(recording) == final["capturedSamples"]  # exactly, for Opus too
    same_as_captured(recording, capture, codec)
    matches_mic(recording, mic, 0.9 if codec == "pcm" else 0.8)


@pytest.mark.parametrize("codec", ["pcm", "opus"])
def test_a_network_cut_mid_stream_leaves_no_gap(codec: str, mic_wav: Path, tmp_path: Path) -> None:
    """5 s without a network (every connection reset, new ones refused), then back: the page
    says it is reconnecting, keeps recording, and backfills; the recording has no gap and
    every part of it is in place."""
    rec = tmp_path / "rec"
    mic = sf.read(str(mic_wav), dtype="int16")[0]
    with recording_receiver(rec) as (rx, port):
        proxy = ProxyThread(port)
        try:
            with browser_page(proxy.url.replace("ws://", "http://"), fake_mic_wav=mic_wav) as page:
                errors = page_errors(page)
                open_guest_page(page, f"name=guest&codec={codec}")
                wait_for_level(page)
                page.evaluate("() => window.micwireSend.start()")
                wait_for_audio(page, 3)
                proxy.loop.call_soon_threadsafe(setattr, proxy.proxy, "refuse_new", True)
                proxy.cut()
                seen: list[dict[str, Any]] = []
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    seen.append(stats(page))
                    time.sleep(0.25)
                proxy.loop.call_soon_threadsafe(setattr, proxy.proxy, "refuse_new", False)
                reconnecting = [s for s in seen if s["state"] == "reconnecting"]
                assert reconnecting, [s["status"] for s in seen]
                assert "reconnecting (attempt" in reconnecting[-1]["status"]
                assert "still recording" in reconnecting[-1]["status"]
                # audio piles up while the network is gone, and is counted
                assert reconnecting[-1]["waitingSeconds"] > 3, reconnecting[-1]
                page.wait_for_function(
                    "() => window.micwireSend.stats().reconnects >= 1"
                    " && window.micwireSend.state === 'live'",
                    timeout=seconds(20) * 1000,
                )
                # the backlog is sent at once
                page.wait_for_function(
                    "() => window.micwireSend.stats().waitingSeconds < 0.5",
                    timeout=seconds(10) * 1000,
                )
                final = stop_and_wait(page)
                assert final["state"] == "delivered", final
                assert final["status"].startswith("everything delivered"), final
                assert final["lostSamples"] == 0 and final["reconnects"] >= 1
                assert not errors, errors
                capture = captured(page)
        finally:
            proxy.close()
    assert "is back; resuming at sample" in rx.log
    recording, _ = check_recording(rec, final)
    assert len(recording) == final["capturedSamples"]
    # gap-free and in place across the seam: exactly what the page captured
    same_as_captured(recording, capture, codec)
    matches_mic(recording, mic, 0.9 if codec == "pcm" else 0.8)


def test_a_stop_without_a_receiver_is_bounded_and_honest(mic_wav: Path, tmp_path: Path) -> None:
    """Stopped while the receiver cannot be reached: within ``finish_s`` the page says how
    much did not get there; once the network is back, Keep trying delivers all of it."""
    rec = tmp_path / "rec"
    with recording_receiver(rec) as (_, port):
        proxy = ProxyThread(port)
        try:
            with browser_page(proxy.url.replace("ws://", "http://"), fake_mic_wav=mic_wav) as page:
                open_guest_page(page, "name=guest&codec=opus&finish_s=3")
                page.evaluate("() => window.micwireSend.start()")
                wait_for_audio(page, 2)
                proxy.loop.call_soon_threadsafe(setattr, proxy.proxy, "refuse_new", True)
                proxy.cut()
                wait_for_audio(page, 3)
                started = time.monotonic()
                stopped = stop_and_wait(page, timeout_s=10)
                assert time.monotonic() - started < seconds(3 + 2)
                assert stopped["state"] == "undelivered", stopped
                missing = (stopped["capturedSamples"] - stopped["ackedSamples"]) / RATE
                assert missing > 0.5, stopped
                assert stopped["status"].startswith(f"not delivered: {missing:.1f} s"), stopped
                assert page.is_visible("#retry")
                proxy.loop.call_soon_threadsafe(setattr, proxy.proxy, "refuse_new", False)
                page.click("#retry")
                page.wait_for_function(ENDED, timeout=seconds(20) * 1000)
                final = stats(page)
                assert final["state"] == "delivered", final
                assert final["status"].startswith("everything delivered"), final
        finally:
            proxy.close()
    recording, _ = check_recording(rec, final)
    assert len(recording) == final["capturedSamples"]


# The page's pure core against the CLI sender's (common/spool.py, common/framing.py): the
# same blocks in, the same packet headers out, through a spool that overflows and an Opus
# codec stream that resumes before the end of the spool.
_CORE_JS = """
async ({blocks, capacity, frame, preSkip, codec, resumeAt}) => {
  const core = await import('/static/send-core.js');
  const spool = new core.Spool(capacity, 1, 48000);
  for (const [position, n, captureUs] of blocks) {
    spool.append(core.makeBlock(position, new Int16Array(n).fill(position % 1000), captureUs, 1));
  }
  spool.closed = true;
  const opus = codec === 'opus';
  const framer = new core.Framer(frame, 1, 48000, {fillGaps: opus, partial: !opus});
  const pk = new core.Packetizer(frame, opus ? preSkip : 0, opus, resumeAt);
  const out = [];
  const put = (h, n) => out.push([h.seq, h.timestamp, h.samples, h.flags, h.captureUs, n]);
  for (const block of spool.read(resumeAt)) {
    for (const chunk of framer.push(block)) put(pk.frame(chunk), chunk.samples);
  }
  const tail = framer.flush();
  if (tail) put(pk.frame(tail), tail.samples);
  for (const h of pk.finish(123)) put(h, 0);
  return {start: spool.start, end: spool.end, held: spool.held, packets: out};
}
"""


@pytest.mark.parametrize("codec", ["pcm", "opus"])
def test_the_page_frames_and_counts_like_the_cli_sender(codec: str, tmp_path: Path) -> None:
    from micwire.common.codecs import Encoder
    from micwire.common.framing import Block, Framer, Packetizer
    from micwire.common.protocol import StreamParams
    from micwire.common.spool import Spool

    # the spool overflows (its oldest block is cut) and the resume point is already gone
    frame, pre_skip, capacity, resume_at = 960, 312, 10000, 4000
    sizes = [960, 960, 500, 1420, 960, 128, 2000, 960, 960, 333, 960, 4000, 960, 77]
    blocks, position = [], 0
    for k, n in enumerate(sizes):
        position += 250 if k == 9 else 0  # samples lost in capture: a gap
        blocks.append((position, n, 1_700_000_000_000_000 + position * 125 // 6))
        position += n

    class FakeEncoder(Encoder):
        def __init__(self, params: StreamParams) -> None:
            self.params = params

        @property
        def pre_skip(self) -> int:
            return pre_skip if codec == "opus" else 0

        def encode(self, frame_: Any) -> bytes:
            return b"x"

    params = StreamParams(codec, 48000, 1, 20.0)
    spool = Spool(capacity, 48000)
    for at, n, capture_us in blocks:
        samples = np.full((n, 1), at % 1000, np.int16)
        spool.append(Block(at, samples, capture_us / 1e6))
    framer = Framer(frame, 1, 48000, fill_gaps=codec == "opus", partial=codec == "pcm")
    packetizer = Packetizer(FakeEncoder(params), origin=resume_at)
    expected = []
    for block in spool.read(resume_at):
        for chunk in framer.push(block):
            expected += [(p, len(chunk.samples)) for p in packetizer.packets(chunk)]
    tail = framer.flush()
    if tail is not None:
        expected += [(p, len(tail.samples)) for p in packetizer.packets(tail)]
    expected += [(p, 0) for p in packetizer.finish(123 / 1e6)]

    with (
        recording_receiver(tmp_path / "rec") as (_, port),
        browser_page(f"http://127.0.0.1:{port}") as page,
    ):
        page.goto("/send?name=core")
        got = page.evaluate(
            _CORE_JS,
            {
                "blocks": blocks,
                "capacity": capacity,
                "frame": frame,
                "preSkip": pre_skip,
                "codec": codec,
                "resumeAt": resume_at,
            },
        )
    assert (got["start"], got["end"], got["held"]) == (spool.start, spool.end, len(spool))
    assert resume_at < spool.start and spool.start not in [at for at, _, _ in blocks]
    want = [[p.seq, p.timestamp, p.samples, p.flags, p.capture_time_us, n] for p, n in expected]
    # capture times: the page keeps integer µs, the CLI float seconds; both round to the µs
    for g, w in zip(got["packets"], want, strict=True):
        assert g[:4] == w[:4] and g[5] == w[5] and abs(g[4] - w[4]) <= 1, (g, w)


def test_a_send_only_token_sends_but_cannot_watch(mic_wav: Path, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    with (
        recording_receiver(rec, "--token", "T0ken", "--send-token", "S3nd") as (_, port),
        browser_page(f"http://127.0.0.1:{port}", fake_mic_wav=mic_wav) as page,
    ):
        url = f"http://127.0.0.1:{port}"
        # no token: the page sends the browser to the login form, a sender gets HTTP 401
        page.goto("/send?name=guest")
        assert "/login" in page.url
        with pytest.raises(InvalidStatus) as refused, connect(f"ws://127.0.0.1:{port}/"):
            pass
        assert refused.value.response.status_code == 401
        # the guest link: its token becomes the login cookie and leaves the address bar
        open_guest_page(page, "name=guest&codec=pcm&token=S3nd")
        assert "S3nd" not in page.url and "/send?name=guest" in page.url
        page.evaluate("() => window.micwireSend.start()")
        wait_for_audio(page, 2)
        final = stop_and_wait(page)
        assert final["state"] == "delivered", final
        check_recording(rec, final)
        # the send-only cookie opens neither the monitor page nor the metrics
        page.goto("/")
        assert "/login" in page.url
        assert page.request.get(url + "/metrics").status == 401
        assert page.request.get(url + "/api/streams").status == 401
        # a page whose cookie is gone (token changed, logged out) says so and stops
        open_guest_page(page, "name=guest2&codec=pcm&token=S3nd")
        page.context.clear_cookies()
        page.evaluate("() => window.micwireSend.start()")
        page.wait_for_function(ENDED, timeout=seconds(15) * 1000)
        after = stats(page)
        assert after["state"] == "failed" and "not allowed to send" in after["status"], after


def test_voice_processing_is_off_unless_asked_for(mic_wav: Path, tmp_path: Path) -> None:
    keys = ("echoCancellation", "noiseSuppression", "autoGainControl")
    with (
        recording_receiver(tmp_path / "rec") as (_, port),
        browser_page(f"http://127.0.0.1:{port}", fake_mic_wav=mic_wav) as page,
    ):
        open_guest_page(page, "name=guest")
        assert not page.is_checked("#processing")
        settings = page.evaluate("() => window.micwireSend.trackSettings()")
        assert [settings[k] for k in keys] == [False, False, False], settings
        page.check("#processing")  # for a speakerphone
        page.wait_for_function(
            "() => { const s = window.micwireSend.trackSettings();"
            " return s && s.echoCancellation && s.noiseSuppression && s.autoGainControl; }",
            timeout=seconds(10) * 1000,
        )
        page.uncheck("#processing")
        page.wait_for_function(
            "() => { const s = window.micwireSend.trackSettings();"
            " return s && !s.echoCancellation && !s.noiseSuppression && !s.autoGainControl; }",
            timeout=seconds(10) * 1000,
        )


def test_a_name_that_turns_text_around_is_shown_escaped(mic_wav: Path, tmp_path: Path) -> None:
    """A link whose name starts with a right-to-left override (U+202E): the name box shows
    "exe.png", so the page says the name as it really is, escaped; the stream gets the
    name exactly as given, and the monitor page shows it escaped too."""
    name = "\u202egnp.exe"
    with (
        recording_receiver(tmp_path / "rec") as (rx, port),
        browser_page(f"http://127.0.0.1:{port}", fake_mic_wav=mic_wav) as page,
    ):
        open_guest_page(page, "name=%E2%80%AEgnp.exe&codec=pcm")
        assert page.input_value("#name") == name
        hint = page.locator("#name-shown")
        assert hint.is_visible()
        assert "\\u202Egnp.exe" in hint.inner_text() and "\u202e" not in hint.inner_text()
        page.evaluate("() => window.micwireSend.start()")
        wait_for_audio(page, 1)
        rx.wait_for(f"stream {re.escape(repr(name))} from")  # the name as sent, not escaped
        monitor = page.context.new_page()
        monitor.goto("/")
        card = monitor.locator("article.stream .name")
        card.wait_for(timeout=seconds(10) * 1000)
        assert card.inner_text() == "\\u202Egnp.exe"
        monitor.close()
        assert stop_and_wait(page)["state"] == "delivered"
        page.fill("#name", "anna")  # a plain name needs no word
        assert not hint.is_visible()
