"""The monitor page in a real browser (the system's Chromium, headless, driven by
Playwright): it shows the streams, its meters move, Listen really plays the stream (the
page's audio output is tapped with an AnalyserNode), and a token keeps strangers out."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import browser_page, tone_peak_hz
from rig import Micwire, jack_server, receiver, seconds


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


#: What the listen line of a card says, every 0.1 s for `seconds` (collected in the page, so
#: no reading is missed): [underruns text, buffer text, latency text, "caught up" text].
WATCH_JS = """
async ([name, seconds]) => {
  const line = document.querySelector(`article.stream[data-stream="${name}"] .lstatus`);
  const text = (sel) => line.querySelector(sel)?.textContent ?? '';
  const seen = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    seen.push([text('.l-underruns'), text('.l-queue'), text('.l-latency'), text('.l-skipped')]);
    await new Promise((r) => setTimeout(r, 100));
  }
  return seen;
}
"""


def buffer_shown(text: str) -> tuple[int, int] | None:
    """("buffer 15/15 ms") -> (15, 15): the buffer's low point and its target."""
    m = re.fullmatch(r"buffer (\d+)/(\d+) ms", text)
    return (int(m[1]), int(m[2])) if m else None


def watch(page: object, name: str, seconds_: float) -> list[list[str]]:
    seen: list[list[str]] = page.evaluate(WATCH_JS, [name, seconds_])  # type: ignore[attr-defined]
    return seen


@pytest.mark.quiet  # real-time rendering: what a loaded machine cannot promise
@pytest.mark.parametrize("codec", ["opus", "pcm"])
def test_listening_starts_without_an_underrun_and_holds_its_target(codec: str) -> None:
    """From the first moment: no underrun, and the buffer never near empty (its low point,
    what a late packet may use up, stays near the target: the player starts with the
    target queued beyond the next packet, not with the next packet due at once)."""
    with tone_stream("kitchen", 440, "--codec", codec) as url, browser_page(url) as page:
        page.goto("/")
        card = page.locator('article.stream[data-stream="kitchen"]')
        card.locator("button.listen").click()
        card.locator(".l-queue").filter(has_text="buffer").wait_for(timeout=seconds(15) * 1000)
        seen = watch(page, "kitchen", 4.0)
        buffers = [b for b in (buffer_shown(s[1]) for s in seen) if b is not None]
        assert len(buffers) > 30, seen
        assert all(s[0] == "0 underruns" for s in seen), seen
        assert all(low >= target - 10 for low, target in buffers), buffers
        # and it settles near the target (the start cushion played off, a little fast)
        page.wait_for_function(
            "() => { const m = /buffer (\\d+)\\/(\\d+) ms/.exec(document.querySelector("
            "'article.stream[data-stream=kitchen] .l-queue').textContent);"
            " return m && Math.abs(m[1] - m[2]) <= 5; }",
            timeout=seconds(15) * 1000,
        )
        state = page.evaluate("() => window.micwire.listening.kitchen")
        assert state["underruns"] == 0 and state["skippedMs"] == 0, state


@pytest.mark.quiet
def test_late_audio_is_caught_up_not_kept() -> None:
    """The audio thread stalls for 0.2 s (the context suspended, as a busy machine or a
    sound card hiccup does) while packets keep coming: the player skips what piled up with
    a cross-fade and says so, instead of playing 0.2 s late from then on."""
    with tone_stream("kitchen", 440, "--codec", "pcm") as url, browser_page(url) as page:
        page.goto("/")
        listen_to(page, "kitchen")
        page.wait_for_function(
            "() => { const l = window.micwire.listening.kitchen;"
            " return l.lowMs !== null && Math.abs(l.lowMs - l.targetMs) <= 5; }",
            timeout=seconds(15) * 1000,
        )
        before = page.evaluate("() => window.micwire.listening.kitchen.latencyMs")
        page.evaluate(
            "async () => { const ctx = window.micwire.ctx; await ctx.suspend();"
            " await new Promise((r) => setTimeout(r, 200)); await ctx.resume(); }"
        )
        page.wait_for_function(
            "() => { const l = window.micwire.listening.kitchen;"
            " return l.skippedMs > 100 && l.lowMs !== null && l.lowMs - l.targetMs <= 5; }",
            timeout=seconds(5) * 1000,
        )
        seen = watch(page, "kitchen", 2.0)
        assert all(s[3].startswith("caught up") for s in seen), seen
        assert all(s[0] == "0 underruns" for s in seen), seen
        latest = page.evaluate("() => window.micwire.listening.kitchen.latencyMs")
        assert latest < before + 20, (before, latest)  # not 0.2 s late


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
        # a listener hears and sees levels; the mix's controls are the full role's
        assert page.evaluate("window.micwire.role") == "listen"
        assert page.locator('article.stream[data-stream="secret"] .mix').is_hidden()
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


def test_the_mix_strip_changes_what_the_receiver_plays(tmp_path: Path) -> None:
    """The full role gets a fader, mute, solo and pan on each stream's row; what it sets is
    the receiver's (``GET /api/streams`` shows it) and outlives the page."""
    with (
        tone_stream("anna", 440, receive=("--state", str(tmp_path))) as url,
        browser_page(url) as page,
    ):
        page.goto("/")
        strip = page.locator('article.stream[data-stream="anna"] .mix')
        strip.wait_for()  # shown: no token, everybody has the full role

        def mix() -> dict[str, object]:
            views = json.loads(page.request.get(url + "/api/streams").text())["streams"]
            return next(v["mix"] for v in views if v["stream"] == "anna")

        strip.locator(".mix-mute").click()
        strip.locator(".mix-gain").evaluate(
            "(el) => { el.value = '-6'; el.dispatchEvent(new Event('input')); }"
        )
        strip.locator(".mix-pan").evaluate(
            "(el) => { el.value = '0.5'; el.dispatchEvent(new Event('input')); }"
        )
        deadline = time.monotonic() + seconds(10)
        while mix() != {"gain_db": -6.0, "mute": True, "solo": False, "pan": 0.5}:
            assert time.monotonic() < deadline, mix()
            time.sleep(0.05)
        assert strip.locator(".mix-mute").get_attribute("aria-pressed") == "true"
        assert strip.locator(".mix-gain-text").text_content() == "-6.0 dB"
        page.reload()  # kept by the receiver, not the page
        strip.wait_for()
        page.wait_for_function(
            "() => document.querySelector('article.stream[data-stream=\"anna\"] .mix-gain')"
            ".value === '-6'"
        )
    assert json.loads((tmp_path / "mix.json").read_text())["streams"]["anna"]["mute"] is True


def test_the_output_strip_shows_the_mix_and_sets_its_master(tmp_path: Path) -> None:
    """Above the streams, one strip per output device the receiver plays on: its rate, how
    many streams, the mix's meter moving, and (full role) its master gain."""
    with jack_server(tmp_path) as jack:
        env = {"JACK_DEFAULT_SERVER": jack}
        rx, port = receiver("--output-device", "system", "--state", str(tmp_path), env=env)
        tx = Micwire("send", f"ws://127.0.0.1:{port}", "--name", "anna", "--source", "tone:440")
        url = f"http://127.0.0.1:{port}"
        try:
            rx.wait_for(r"stream 'anna' from")
            with browser_page(url) as page:
                page.goto("/")
                strip = page.locator('#outputs .output[data-device="system"]')
                strip.wait_for()
                assert "1 stream" in (strip.locator(".output-about").text_content() or "")
                # the tone at -12 dBFS, -3 dB on each side of a stereo mix: about -15 dBFS
                page.wait_for_function(
                    "() => Number(document.querySelector('#outputs .meter').dataset.db) > -20",
                    timeout=seconds(10) * 1000,
                )
                strip.locator(".master-gain").evaluate(
                    "(el) => { el.value = '-3'; el.dispatchEvent(new Event('input')); }"
                )
                deadline = time.monotonic() + seconds(10)
                while True:
                    (output,) = json.loads(page.request.get(url + "/api/streams").text())["outputs"]
                    if output["master"] == {"gain_db": -3.0}:
                        break
                    assert time.monotonic() < deadline, output
                    time.sleep(0.05)
        finally:
            tx.signal(signal.SIGINT)
            tx.wait()
            rx.signal(signal.SIGINT)
            rx.wait()


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


#: Each part line of a card's recordings: its words, and its links; whether each is drawn
#: whole inside the recordings cell (not cut off, not spilling into the next column).
PARTS_JS = """
(card) => {
  const cell = card.querySelector('.c-rec').getBoundingClientRect();
  const inside = (el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.left >= cell.left - 1 && box.right <= cell.right + 1
      && el.scrollWidth <= el.clientWidth + 1;
  };
  return [...card.querySelectorAll('.c-rec li.part')].map((li) => ({
    when: li.querySelector('.when').innerText,
    whenInside: inside(li.querySelector('.when')),
    links: [...li.querySelectorAll('.files a')].map((a) => ({
      text: a.innerText, title: a.title, href: a.getAttribute('href'), inside: inside(a),
    })),
  }));
}
"""


def test_the_page_shows_each_part_of_a_recording_with_its_formats(tmp_path: Path) -> None:
    """A stream recorded as WAV and MP3, continued after a receiver restart (two parts),
    and one recorded once: in the wide layout, each part is one line, in order, saying the
    part, its start and length, with a link per file named by its format (its full name in
    the tooltip), none cut off."""
    rec = tmp_path / "rec"
    formats = ("--record", str(rec), "--no-play", "--format", "wav,mp3")
    rx, port = receiver(*formats)
    url = f"ws://127.0.0.1:{port}"
    phoenix = Micwire("send", url, "--name", "phoenix", "--source", "tone:440")
    rx2 = kitchen = None
    try:
        rx.wait_for("stream 'phoenix' from")
        time.sleep(seconds(1.5))
        rx.signal(signal.SIGINT)  # stopped (Ctrl-C) and started again on the same directory
        rx.wait()
        rx2 = Micwire("receive", "--host", "127.0.0.1", "--port", str(port), *formats)
        rx2.wait_for("continuing phoenix-.* from sample")
        kitchen = Micwire("send", url, "--name", "kitchen", "--source", "tone:660")
        rx2.wait_for("stream 'kitchen' from")
        sidecar = json.loads(next(rec.glob("phoenix-*.json")).read_text())
        with browser_page(f"http://127.0.0.1:{port}", viewport=(1400, 900)) as page:
            page.goto("/")
            card = page.locator('article.stream[data-stream="phoenix"]')
            page.wait_for_function(
                "() => document.querySelectorAll("
                "'article.stream[data-stream=kitchen] .c-rec li.part a').length === 3"
                " && document.querySelectorAll("
                "'article.stream[data-stream=phoenix] .c-rec li.part').length === 2",
                timeout=seconds(10) * 1000,
            )
            parts = card.evaluate(PARTS_JS)
            once = page.locator('article.stream[data-stream="kitchen"]').evaluate(PARTS_JS)
            api = page.request.get(f"http://127.0.0.1:{port}/api/streams").json()
            first_wav = page.request.get(f"http://127.0.0.1:{port}" + parts[0]["links"][0]["href"])
            assert first_wav.status == 200 and first_wav.body()[:4] == b"RIFF"
    finally:
        for proc in (phoenix, kitchen, rx2):
            if proc is not None:
                proc.signal(signal.SIGINT)
                proc.wait()
    names = [part["files"] for part in sidecar["parts"]]
    assert len(names) == 2 and [n.rsplit(".", 1)[1] for n in names[1]] == ["wav", "mp3"]
    # part 1, then part 2: each with its start, its length and its files by format
    assert [p["when"].split(" · ")[0] for p in parts] == ["part 1", "part 2"]
    assert all(len(p["when"].split(" · ")) == 3 for p in parts), parts
    assert [link["text"] for link in parts[0]["links"]] == ["WAV", "MP3", "sidecar"]
    assert [link["text"] for link in parts[1]["links"]] == ["WAV", "MP3"]
    assert [link["title"].split(" · ")[0] for link in parts[0]["links"]] == [
        *names[0],
        next(rec.glob("phoenix-*.json")).name,
    ]
    assert [link["title"].split(" · ")[0] for link in parts[1]["links"]] == names[1]
    assert all(link["inside"] for p in parts + once for link in p["links"]), parts + once
    assert all(p["whenInside"] for p in parts + once), parts + once
    # a recording in one part says no part number
    assert len(once) == 1 and not once[0]["when"].startswith("part")
    assert [link["text"] for link in once[0]["links"]] == ["WAV", "MP3", "sidecar"]
    # scripts get the same from the API: parts in order, files with their formats
    view = next(s for s in api["streams"] if s["stream"] == "phoenix")
    assert [p["part"] for p in view["parts"]] == [1, 2]
    assert [[f["format"] for f in p["files"]] for p in view["parts"]] == [["wav", "mp3"]] * 2
    assert view["parts"][0]["start_utc"] < view["parts"][1]["start_utc"]
    assert view["parts"][0]["outcome"] == "interrupted (the receiver stopped)"
    assert view["sidecar"]["name"] == next(rec.glob("phoenix-*.json")).name
    assert [r["name"] for r in view["recordings"]] == [
        *names[0],
        *names[1],
        view["sidecar"]["name"],
    ]
