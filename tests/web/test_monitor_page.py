"""The monitor page in a real browser (the system's Chromium, headless, driven by
Playwright): it shows the streams, its meters move, Listen really plays the stream (the
page's audio output is tapped with an AnalyserNode), and a token keeps strangers out."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import browser_page, tone_peak_hz
from rig import Micwire, receiver, seconds


@contextmanager
def tone_stream(name: str, hz: int, *extra: str, receive: tuple[str, ...] = ()) -> Iterator[str]:
    """A receiver (recording off, no sound card) and a sender playing a tone; yields the
    page's URL."""
    rx, port = receiver("--no-play", *receive)
    tx = Micwire("send", f"ws://127.0.0.1:{port}", "--name", name, "--source", f"tone:{hz}", *extra)
    try:
        rx.wait_for(f"stream {re.escape(repr(name))} from")  # the log escapes names
        yield f"http://127.0.0.1:{port}"
    finally:
        tx.signal(signal.SIGINT)
        tx.wait()
        rx.signal(signal.SIGINT)
        rx.wait()


def listen_to(page: object, name: str) -> None:
    """Press the stream's Listen button, as a person would, and wait until it plays."""
    page.locator(f'article.stream[data-stream="{name}"] button.listen').click()  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "(name) => { const l = window.micwire.listening[name];"
        " return l && l.queuedMs > 0 && l.packets > 20; }",
        arg=name,
        timeout=seconds(15) * 1000,
    )


@pytest.mark.parametrize(("codec", "hz"), [("opus", 440), ("pcm", 660)])
def test_the_page_shows_a_stream_and_plays_it(codec: str, hz: int) -> None:
    errors: list[str] = []
    with (
        tone_stream("kitchen", hz, "--codec", codec) as url,
        browser_page(
            url,
            viewport=(390, 844),
            on_console=lambda m: errors.append(m) if "error" in m else None,
        ) as page,
    ):
        page.goto("/")
        card = page.locator('article.stream[data-stream="kitchen"]')
        card.wait_for(timeout=seconds(10) * 1000)
        assert card.locator(".codec").inner_text().lower().startswith(codec)
        assert card.locator(".state-text").inner_text().lower() == "live"
        # the meters move: the -12 dBFS tone shows, and the value is refreshed
        meter = card.locator('.meter[data-kind="peak"]')
        page.wait_for_function(
            "() => { const m = document.querySelector('article.stream .meter[data-kind=peak]');"
            " return m && m.dataset.db && parseFloat(m.dataset.db) > -20; }",
            timeout=seconds(10) * 1000,
        )
        assert -14 < float(meter.get_attribute("data-db") or "-120") < -10
        listen_to(page, "kitchen")
        # the page steers its queue by playing up to 2 % fast or slow (after a stall of this
        # loaded VM, say): the tone is heard at its pitch times the player's ratio then
        ratio = "() => window.micwire.listening['kitchen'].ratio || 1"
        before = page.evaluate(ratio)
        heard = tone_peak_hz(page, seconds=1.5)
        after = page.evaluate(ratio)
        low, high = sorted((hz * before, hz * after))
        assert low - 5 < heard.peak_hz < high + 5, (heard, before, after)
        assert heard.rms > 0.1, heard  # the tone at -12 dBFS (0.25 peak) is audible
        state = page.evaluate("() => window.micwire.listening['kitchen']")
        path = {"opus": "opus-webcodecs", "pcm": "pcm"}[codec]
        assert state["codecPath"] == path
        assert 0 < state["latencyMs"] < 1000
    assert not [e for e in errors if "error:" in e], errors


def test_a_browser_without_opus_gets_pcm_from_the_receiver() -> None:
    """When WebCodecs cannot decode Opus, the page asks the receiver for PCM instead of
    failing silently."""
    with tone_stream("opus-only", 440, "--codec", "opus") as url, browser_page(url) as page:
        page.add_init_script("delete window.AudioDecoder;")  # a browser without WebCodecs
        page.goto("/")
        page.locator('article.stream[data-stream="opus-only"]').wait_for()
        listen_to(page, "opus-only")
        assert abs(tone_peak_hz(page, seconds=1.0).peak_hz - 440) < 5
        state = page.evaluate("() => window.micwire.listening['opus-only']")
        assert state["codecPath"] == "pcm-fallback"


def test_a_token_keeps_strangers_out_and_the_listen_token_lets_in(tmp_path: Path) -> None:
    with (
        tone_stream(
            "secret",
            440,
            "--token",
            "s3cret",
            receive=("--token", "s3cret", "--listen-token", "look"),
        ) as url,
        browser_page(url) as page,
    ):
        page.goto("/")
        assert "/login" in page.url  # the page itself needs a login
        page.fill('input[name="token"]', "wrong")
        page.click('button[type="submit"]')
        page.wait_for_url("**/login?error=1**")
        page.fill('input[name="token"]', "look")
        page.click('button[type="submit"]')
        page.locator('article.stream[data-stream="secret"]').wait_for()
        listen_to(page, "secret")
        assert abs(tone_peak_hz(page, seconds=1.0).peak_hz - 440) < 5
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert (
            cookies["micwire_auth"]["httpOnly"] and "look" not in cookies["micwire_auth"]["value"]
        )
        metrics = page.request.get(url + "/metrics")
        assert metrics.status == 200 and "micwire_packets_total" in metrics.text()
        page.context.clear_cookies()
        assert page.request.get(url + "/metrics").status == 401
        assert json.loads(page.request.get(url + "/healthz").text())["status"] == "ok"


#: Where the first "g" and the last "x" of an element's text are drawn (px from the left):
#: what a reader sees, not the order the characters are stored in.
READING_ORDER_JS = """
(el) => {
  const node = el.firstChild;
  const range = document.createRange();
  const left = (i) => {
    range.setStart(node, i);
    range.setEnd(node, i + 1);
    return range.getBoundingClientRect().left;
  };
  return { g: left(node.data.indexOf('g')), x: left(node.data.lastIndexOf('x')) };
}
"""


def test_a_name_cannot_turn_the_page_around() -> None:
    """A right-to-left override (U+202E) before "gnp.exe" draws the name as "exe.png";
    the page shows it escaped, read left to right."""
    name = "\u202egnp.exe"
    with tone_stream(name, 440) as url, browser_page(url) as page:
        page.goto("/")
        card = page.locator(f'article.stream[data-stream="{name}"]')
        card.wait_for(timeout=seconds(10) * 1000)
        shown = card.locator(".name")
        assert shown.inner_text() == "\\u202Egnp.exe"
        assert shown.get_attribute("title") == "\\u202Egnp.exe"
        order = shown.evaluate(READING_ORDER_JS)
        assert order["g"] < order["x"], order  # "…gnp.exe" as written, not "exe.png"
        label = card.locator(".volume").get_attribute("aria-label")
        assert label == "Volume of \\u202Egnp.exe"
        assert "\u202e" not in page.locator("body").inner_text()
