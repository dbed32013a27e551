"""The ``micwire`` command's options: the parser, each option with its default and help.

Each value is checked by its converter (micwire.app.converters); ``MICWIRE_<OPTION>``
environment variables (e.g. ``MICWIRE_PORT``) give defaults, through the same converters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..common.audiofile import RECORDING_FORMATS
from ..common.protocol import CODECS, FRAME_DURATIONS_MS
from .converters import env, formats, gather_ms, host, percent, port, positive, route, workers


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
    demo.add_argument("--seconds", type=positive(float), default=3.0)
    return parser


def _receive_options(rx: argparse.ArgumentParser) -> None:
    rx.add_argument(
        "--host",
        type=host,
        default=env("host", None),
        help="address to listen on (default: all)",
    )
    rx.add_argument("--port", type=port, default=env("port", "8765"), help="port (default 8765)")
    rx.add_argument(
        "--record",
        type=Path,
        default=env("record", None),
        metavar="DIR",
        help="record each stream to a file in DIR",
    )
    rx.add_argument(
        "--format",
        type=formats,
        default=env("format", "wav"),
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
        default=env("output_device", None),
        metavar="D",
        help="output device: index or name substring (see `micwire devices`)",
    )
    rx.add_argument(
        "--route",
        action="append",
        type=route,
        default=[],
        metavar="GLOB=DEVICE",
        help="play the streams whose names match GLOB on DEVICE (index or name substring; "
        "'none': not played) instead of the output device; the first match wins (repeatable)",
    )
    rx.add_argument(
        "--latency-ms",
        type=positive(float),
        default=20.0,
        help="live playback buffer floor; measured jitter adds to it (default 20)",
    )
    rx.add_argument(
        "--token",
        default=env("token", None),
        help="require senders to present this secret (or set MICWIRE_TOKEN)",
    )
    rx.add_argument(
        "--listen-token",
        default=env("listen_token", None),
        metavar="T",
        help="read-only token: watch the monitor page, listen, /metrics; not send",
    )
    rx.add_argument(
        "--send-token",
        default=env("send_token", None),
        metavar="T",
        help="send-only token: may send a stream (a guest's link), not watch",
    )
    rx.add_argument(
        "--state",
        type=Path,
        default=env("state", None),
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
        type=positive(float),
        default=30.0,
        metavar="S",
        help="... for this long (default 30 s)",
    )
    rx.add_argument(
        "--down-s",
        type=positive(float),
        default=10.0,
        metavar="S",
        help="alert 'down' when a sender is gone this long (default 10 s)",
    )
    rx.add_argument(
        "--webhook",
        default=env("webhook", None),
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
        "--max-streams", type=positive(int), default=16, help="streams at once (default 16)"
    )
    rx.add_argument(
        "--max-listeners",
        type=positive(int),
        default=env("max_listeners", "100"),
        metavar="N",
        help="browser listeners per stream; the next is answered 503 (default 100)",
    )
    rx.add_argument(
        "--gather-ms",
        type=gather_ms,
        default=env("gather_ms", "100"),
        metavar="MS",
        help="while nothing plays live and no page or listener is connected, look at the "
        "network at most every MS ms and handle what arrived in one go: far less CPU per "
        "stream (default 100; 0: at once)",
    )
    rx.add_argument(
        "--workers",
        type=workers,
        nargs="?",
        const="auto",
        default=env("workers", "1"),
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
    tx.add_argument("--name", default=env("name", None), help="stream name (default: host name)")
    src = tx.add_mutually_exclusive_group()
    src.add_argument(
        "--device",
        default=env("device", None),
        metavar="D",
        help="input device: index or name substring (default: system default)",
    )
    src.add_argument("--source", metavar="SPEC", help="tone:HZ or file:PATH instead of a device")
    tx.add_argument("--codec", choices=CODECS, default="pcm")
    tx.add_argument(
        "--rate",
        type=int,
        default=None,
        metavar="HZ",
        help="sample rate sent, in Hz (default: 48000, or for PCM from a device that does "
        "not take 48000, the device's own rate; a device that does not take HZ is captured "
        "at its own rate and converted)",
    )
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
    tx.add_argument("--duration", type=positive(float), metavar="S", help="stop after S seconds")
    tx.add_argument(
        "--token", default=env("token", None), help="the receiver's secret (or MICWIRE_TOKEN)"
    )
    tx.add_argument("--cafile", type=Path, help="CA certificate to trust for wss:// (PEM)")
    tx.add_argument(
        "--state",
        type=Path,
        default=env("state", None),
        metavar="DIR",
        help="where to keep the stream's resume secret until the receiver confirms the "
        "stream, so that a restarted sender can end it (default $XDG_STATE_HOME/micwire, "
        "~/.local/state/micwire)",
    )
    tx.add_argument(
        "--spool-s",
        type=positive(float, minimum=1.0),
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
        type=positive(float),
        default=None,
        metavar="S",
        help="give up when the receiver cannot be reached for S seconds, at the start too "
        "(default: keep trying while capturing; the spool keeps the newest audio)",
    )
    tx.add_argument(
        "--finish-timeout",
        type=positive(float),
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
        type=percent,
        default=10,
        metavar="PCT",
        help="packet loss the Opus FEC plans for, in %% (default 10)",
    )
    # testing aid: run the tone/file pacing clock this many ppm fast (+) or slow (-)
    tx.add_argument("--clock-ppm", type=float, default=0.0, help=argparse.SUPPRESS)
