"""The ``micwire`` command's options: the parser, and the converters that check each value.

Environment variables ``MICWIRE_<OPTION>`` (e.g. ``MICWIRE_PORT``) give defaults for the
options; they go through the same converters as the flags, so a bad value gets the same
one-line error.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..common.audiofile import RECORDING_FORMATS
from ..common.protocol import CODECS, FRAME_DURATIONS_MS


def _env(name: str, default: Any) -> Any:
    """The default of an option: ``MICWIRE_<NAME>`` if set. A string default goes through
    the option's ``type`` converter like a command-line value (argparse does that)."""
    return os.environ.get(f"MICWIRE_{name.upper()}", default)


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in names if f not in RECORDING_FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {','.join(bad) or text!r}; use {', '.join(RECORDING_FORMATS)} "
            "(or a comma list)"
        )
    return names


def _in_range(
    convert: Callable[[str], Any], low: float, high: float, expected: str, limits: str
) -> Callable[[str], Any]:
    """An option's converter: ``convert(text)`` between ``low`` and ``high``, or a
    one-line error (argparse shows it; a MICWIRE_* variable gets the same)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{limits}, got {text}")
        return value

    return parse


_port = _in_range(int, 0, 65535, "a port number", "port must be 0..65535")


def _host(text: str) -> str:
    """An address; an IPv6 one may come in brackets, as in a URL (``[::1]``)."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


# the receiver's own tick (0.2 s) wakes it anyway: more would not gather more
_gather_ms = _in_range(float, 0, 200, "milliseconds", "must be 0..200 ms")
_percent = _in_range(int, 0, 100, "a whole number", "must be 0..100 (%)")


def _positive(kind: type, minimum: float | None = None) -> Callable[[str], Any]:
    """A finite number above 0 (or at least ``minimum``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        return value

    return parse


#: More receiver workers than this is a typo, not a deployment.
MAX_WORKERS = 64


def _workers(text: str) -> int:
    if text == "auto":
        from ..receiver.workers import default_workers

        return default_workers()
    workers = int(_positive(int)(text))
    if workers > MAX_WORKERS:  # a typo must not start thousands of processes
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_WORKERS}, got {workers} (one per core is the usual: "
            "--workers without N)"
        )
    return workers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="micwire", description="Live microphone audio from one machine to another."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=f"micwire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _receive_options(
        sub.add_parser("receive", help="serve WebSocket streams: play them and record them")
    )
    _send_options(sub.add_parser("send", help="capture audio and send it to a receiver"))
    sub.add_parser("devices", help="list audio devices")
    demo = sub.add_parser("demo", help="receiver + senders on built-in tones; no sound card needed")
    demo.add_argument("--dir", type=Path, default=Path("micwire-demo"), help="where to record")
    demo.add_argument("--seconds", type=_positive(float), default=3.0)
    return parser


def _receive_options(rx: argparse.ArgumentParser) -> None:
    rx.add_argument(
        "--host",
        type=_host,
        default=_env("host", None),
        help="address to listen on (default: all)",
    )
    rx.add_argument("--port", type=_port, default=_env("port", "8765"), help="port (default 8765)")
    rx.add_argument(
        "--record",
        type=Path,
        default=_env("record", None),
        metavar="DIR",
        help="record each stream to a file in DIR",
    )
    rx.add_argument(
        "--format",
        type=_formats,
        default=_env("format", "wav"),
        help=f"{', '.join(RECORDING_FORMATS[:-1])} or {RECORDING_FORMATS[-1]}; a comma list "
        "records several (default wav)",
    )
    rx.add_argument(
        "--play",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="play streams live on the output device (default on)",
    )
    rx.add_argument(
        "--output-device",
        default=_env("output_device", None),
        metavar="D",
        help="output device: index or name substring (see `micwire devices`)",
    )
    rx.add_argument(
        "--latency-ms",
        type=_positive(float),
        default=20.0,
        help="live playback buffer floor; measured jitter adds to it (default 20)",
    )
    rx.add_argument(
        "--token",
        default=_env("token", None),
        help="require senders to present this secret (or set MICWIRE_TOKEN)",
    )
    rx.add_argument(
        "--listen-token",
        default=_env("listen_token", None),
        metavar="T",
        help="read-only token: watch the monitor page, listen, /metrics; not send",
    )
    rx.add_argument(
        "--send-token",
        default=_env("send_token", None),
        metavar="T",
        help="send-only token: may send a stream (a guest's link), not watch",
    )
    rx.add_argument(
        "--state",
        type=Path,
        default=_env("state", None),
        metavar="DIR",
        help="where to keep what outlives the receiver besides recordings: logins ended by "
        "'Log out' (default $XDG_STATE_HOME/micwire, ~/.local/state/micwire)",
    )
    rx.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve the monitor page, listeners and /metrics on the same port (default on)",
    )
    rx.add_argument(
        "--silence-db",
        type=float,
        default=-60.0,
        metavar="DBFS",
        help="alert 'silence' below this level (default -60 dBFS) ...",
    )
    rx.add_argument(
        "--silence-s",
        type=_positive(float),
        default=30.0,
        metavar="S",
        help="... for this long (default 30 s)",
    )
    rx.add_argument(
        "--down-s",
        type=_positive(float),
        default=10.0,
        metavar="S",
        help="alert 'down' when a sender is gone this long (default 10 s)",
    )
    rx.add_argument(
        "--webhook",
        default=_env("webhook", None),
        metavar="URL",
        help="POST each alert raised or cleared as JSON to URL (retried, never blocks audio)",
    )
    rx.add_argument(
        "--self-signed",
        action="store_true",
        help="serve https/wss with a throw-away certificate (prints its fingerprint): a trial "
        "of the browser pages, which get a microphone only over https",
    )
    rx.add_argument("--cert", type=Path, help="TLS certificate chain (PEM): serve wss://")
    rx.add_argument("--key", type=Path, help="TLS private key (PEM)")
    rx.add_argument(
        "--max-streams", type=_positive(int), default=16, help="streams at once (default 16)"
    )
    rx.add_argument(
        "--max-listeners",
        type=_positive(int),
        default=_env("max_listeners", "100"),
        metavar="N",
        help="browser listeners per stream; the next is answered 503 (default 100)",
    )
    rx.add_argument(
        "--gather-ms",
        type=_gather_ms,
        default=_env("gather_ms", "100"),
        metavar="MS",
        help="while nothing plays live and no page or listener is connected, look at the "
        "network at most every MS ms and handle what arrived in one go: far less CPU per "
        "stream (default 100; 0: at once)",
    )
    rx.add_argument(
        "--workers",
        type=_workers,
        nargs="?",
        const="auto",
        default=_env("workers", "1"),
        metavar="N",
        help="serve the port from N processes (default 1; without N: one per core); each "
        "stream stays one recording wherever its sender reconnects. Records only: no live "
        "playback",
    )
    rx.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show live per-stream figures in the terminal (default: when it is a terminal)",
    )
    rx.add_argument(
        "--stats-json",
        type=Path,
        metavar="FILE",
        help="append one JSON line per stream per second: buffer, jitter, late/lost/"
        "concealed, drift, latency, levels",
    )


def _send_options(tx: argparse.ArgumentParser) -> None:
    tx.add_argument("url", help="receiver URL, e.g. ws://studio-pc:8765")
    tx.add_argument("--name", default=_env("name", None), help="stream name (default: host name)")
    src = tx.add_mutually_exclusive_group()
    src.add_argument(
        "--device",
        default=_env("device", None),
        metavar="D",
        help="input device: index or name substring (default: system default)",
    )
    src.add_argument("--source", metavar="SPEC", help="tone:HZ or file:PATH instead of a device")
    tx.add_argument("--codec", choices=CODECS, default="pcm")
    tx.add_argument("--rate", type=int, default=48000, help="sample rate in Hz (default 48000)")
    tx.add_argument("--channels", type=int, default=1)
    tx.add_argument(
        "--frame-ms",
        type=float,
        default=20.0,
        help=f"frame duration: {', '.join(f'{d:g}' for d in FRAME_DURATIONS_MS)}",
    )
    tx.add_argument(
        "--gather",
        action="store_true",
        help="PCM from a device: gather device blocks into packets of up to a frame (a "
        "wake-up per packet, not per device period: about half the CPU, up to a frame more "
        "latency); without it each block leaves at once. Opus always sends whole frames",
    )
    tx.add_argument("--bitrate", type=int, default=32000, help="Opus bitrate in bit/s")
    tx.add_argument(
        "--application",
        choices=("voip", "audio", "lowdelay"),
        default="audio",
        help="Opus application (default audio)",
    )
    tx.add_argument("--duration", type=_positive(float), metavar="S", help="stop after S seconds")
    tx.add_argument(
        "--token", default=_env("token", None), help="the receiver's secret (or MICWIRE_TOKEN)"
    )
    tx.add_argument("--cafile", type=Path, help="CA certificate to trust for wss:// (PEM)")
    tx.add_argument(
        "--state",
        type=Path,
        default=_env("state", None),
        metavar="DIR",
        help="where to keep the stream's resume secret until the receiver confirms the "
        "stream, so that a restarted sender can end it (default $XDG_STATE_HOME/micwire, "
        "~/.local/state/micwire)",
    )
    tx.add_argument(
        "--spool-s",
        type=_positive(float, minimum=1.0),
        default=120.0,
        metavar="S",
        help="seconds of audio kept to resend after a reconnect (default 120)",
    )
    tx.add_argument(
        "--reconnect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for a receiver that is not up yet, and reconnect after a network failure, "
        "resending what was lost (default on); --no-reconnect: fail at once instead",
    )
    tx.add_argument(
        "--reconnect-timeout",
        type=_positive(float),
        default=None,
        metavar="S",
        help="give up when the receiver cannot be reached for S seconds, at the start too "
        "(default: keep trying while capturing; the spool keeps the newest audio)",
    )
    tx.add_argument(
        "--finish-timeout",
        type=_positive(float),
        default=5.0,
        metavar="S",
        help="once stopped, wait at most S seconds for the receiver to confirm everything "
        "(default 5); then say what was not delivered and exit 1",
    )
    tx.add_argument(
        "--fec", action="store_true", help="Opus in-band forward error correction (costs bitrate)"
    )
    tx.add_argument(
        "--expected-loss",
        type=_percent,
        default=10,
        metavar="PCT",
        help="packet loss the Opus FEC plans for, in %% (default 10)",
    )
    # testing aid: run the tone/file pacing clock this many ppm fast (+) or slow (-)
    tx.add_argument("--clock-ppm", type=float, default=0.0, help=argparse.SUPPRESS)
