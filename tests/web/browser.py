"""A real browser for tests of the receiver's web pages: Playwright (sync API) driving the
system's Chromium (Debian package ``chromium``), headless.

- :func:`find_chromium`: the browser binary (``MICWIRE_CHROMIUM``, ``/usr/bin/chromium``,
  then ``chromium``, ``chromium-browser``, ``google-chrome`` on ``PATH``). Playwright's own
  browser download is not used: it cannot be reached from the test machines.
- :func:`chromium_args`: the flags that work there (see /tmp/browser-lab findings): no
  sandbox (tests run as root), no background networking, audio without a user gesture, and
  optionally a fake microphone playing a WAV file (for a guest-sender page).
- :func:`browser_page`: a context manager yielding a fresh :class:`playwright.sync_api.Page`.
- :func:`tone_peak_hz`: what the monitor page really outputs: an ``AnalyserNode`` on
  ``window.micwire.output`` (the bus all streams are mixed into before the speakers), its
  dominant frequency and RMS over a few seconds.

Missing Playwright or Chromium raises :class:`BrowserMissing` saying to run ``make test``,
which installs both.

The receiver's pages carry a Content-Security-Policy without ``'unsafe-eval'``: give
``page.wait_for_function`` a function (``"() => window.micwire.events > 0"``), not a bare
expression, which Playwright evaluates with ``eval`` once the first check fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Known-good on the test machines (Debian chromium, headless, as root).
BASE_ARGS = (
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # else a stream of refused connections to Google
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",  # an AudioContext runs without a click
)


class BrowserMissing(RuntimeError):
    """Playwright or Chromium is not installed."""


class ToneReading(NamedTuple):
    """What the page played: ``peak_hz``, ``rms`` (full scale 1.0) and ``max_abs``."""

    peak_hz: float
    rms: float
    max_abs: float


def find_chromium() -> str:
    """The system Chromium's path, or :class:`BrowserMissing`."""
    override = os.environ.get("MICWIRE_CHROMIUM")
    if override:
        if Path(override).is_file():
            return override
        raise BrowserMissing(f"MICWIRE_CHROMIUM={override} does not exist")
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissing(
        "no Chromium found (looked for /usr/bin/chromium, "
        + ", ".join(CHROMIUM_NAMES)
        + "); run `make test`, which installs the Debian package chromium"
    )


def chromium_args(fake_mic_wav: str | Path | None = None, *, loop: bool = True) -> list[str]:
    """Command-line flags; with ``fake_mic_wav``, getUserMedia gets that file as its
    microphone (no permission prompt). ``loop=False`` plays it once, then silence."""
    args = list(BASE_ARGS)
    if fake_mic_wav is not None:
        wav = Path(fake_mic_wav)
        if not wav.is_file():
            raise FileNotFoundError(f"fake microphone file {wav} does not exist")
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav.resolve()}{'' if loop else '%noloop'}",
        ]
    return args


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserMissing(
            "Playwright is not installed in this environment; run `make test`, which installs it"
        ) from exc
    return sync_playwright()


@contextlib.contextmanager
def browser_page(
    base_url: str | None = None,
    *,
    fake_mic_wav: str | Path | None = None,
    loop_mic: bool = True,
    viewport: tuple[int, int] | None = None,
    mobile: bool = False,
    on_console: Callable[[str], None] | None = None,
    extra_args: tuple[str, ...] = (),
    bypass_csp: bool = False,
) -> Iterator[Page]:
    """A page in a fresh headless Chromium; everything is closed on exit.

    ``base_url`` lets tests ``page.goto("/")``. ``viewport`` is (width, height) in CSS
    pixels; ``mobile`` adds a phone's touch and device scale. ``on_console`` receives the
    page's console messages and uncaught errors (``"error: …"``) — a test can collect them
    and fail on errors.
    """
    executable = find_chromium()
    with _sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[*chromium_args(fake_mic_wav, loop=loop_mic), *extra_args],
        )
        try:
            options: dict[str, Any] = {}
            if base_url is not None:
                options["base_url"] = base_url
            if viewport is not None:
                options["viewport"] = {"width": viewport[0], "height": viewport[1]}
            if mobile:
                options.update(is_mobile=True, has_touch=True, device_scale_factor=3)
            if bypass_csp:  # a benchmark injecting its own probe into the page
                options["bypass_csp"] = True
            context = browser.new_context(**options)
            page = context.new_page()
            if on_console is not None:
                page.on("console", lambda m: on_console(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: on_console(f"error: {e}"))
            yield page
            context.close()
        finally:
            browser.close()


# Sums the analyser's power spectrum over snapshots taken every fftSize samples for
# `seconds`, so the answer is about the whole window, not one instant; RMS likewise.
_TONE_JS = """
async (seconds) => {
  const mw = window.micwire;
  if (!mw || !mw.ctx || !mw.output) {
    throw new Error('window.micwire.output is not there yet (press Listen first)');
  }
  const ctx = mw.ctx;
  const an = new AnalyserNode(ctx, { fftSize: 8192, smoothingTimeConstant: 0 });
  mw.output.connect(an);
  const bins = an.frequencyBinCount;
  const power = new Float64Array(bins);
  const db = new Float32Array(bins);
  const td = new Float32Array(an.fftSize);
  let sumSq = 0, count = 0, maxAbs = 0, snapshots = 0;
  const stepMs = (an.fftSize / ctx.sampleRate) * 1000;
  const end = performance.now() + seconds * 1000;
  try {
    await new Promise((r) => setTimeout(r, stepMs));  // fill the analyser's window first
    while (performance.now() < end) {
      an.getFloatFrequencyData(db);
      for (let i = 0; i < bins; i++) power[i] += Math.pow(10, db[i] / 10);
      an.getFloatTimeDomainData(td);
      for (let i = 0; i < td.length; i++) {
        sumSq += td[i] * td[i];
        maxAbs = Math.max(maxAbs, Math.abs(td[i]));
      }
      count += td.length;
      snapshots++;
      await new Promise((r) => setTimeout(r, stepMs));
    }
  } finally {
    mw.output.disconnect(an);
  }
  let best = 1;
  for (let i = 2; i < bins - 1; i++) if (power[i] > power[best]) best = i;
  // parabolic interpolation on the log power for sub-bin accuracy
  const a = Math.log(power[best - 1] + 1e-30);
  const b = Math.log(power[best] + 1e-30);
  const c = Math.log(power[best + 1] + 1e-30);
  const den = a - 2 * b + c;
  const delta = den !== 0 ? 0.5 * (a - c) / den : 0;
  return {
    peakHz: (best + delta) * ctx.sampleRate / an.fftSize,
    rms: Math.sqrt(sumSq / Math.max(1, count)),
    maxAbs,
    snapshots,
  };
}
"""


def tone_peak_hz(page: Page, seconds: float = 1.0) -> ToneReading:
    """The dominant frequency (Hz) and RMS of what the monitor page outputs over
    ``seconds`` (at least ~0.4 s): taps ``window.micwire.output`` with an AnalyserNode
    (8192-point FFT, ~5.4 Hz bins at 44.1 kHz, interpolated)."""
    seconds = max(0.4, seconds)
    result = page.evaluate(_TONE_JS, seconds)
    return ToneReading(float(result["peakHz"]), float(result["rms"]), float(result["maxAbs"]))
