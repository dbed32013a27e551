"""The ``micwire`` command's converters: each checks one option's value, or says in one
line what is wrong with it (argparse shows it).

Environment variables ``MICWIRE_<OPTION>`` (e.g. ``MICWIRE_PORT``) give defaults for the
options (:func:`env`); they go through the same converters as the flags, so a bad value
gets the same one-line error. The parser that uses them is micwire.app.options.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import Any

from ..common.audiofile import RECORDING_FORMATS


def env(name: str, default: Any) -> Any:
    """The default of an option: ``MICWIRE_<NAME>`` if set. A string default goes through
    the option's ``type`` converter like a command-line value (argparse does that)."""
    return os.environ.get(f"MICWIRE_{name.upper()}", default)


def formats(text: str) -> tuple[str, ...]:
    names = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in names if f not in RECORDING_FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {','.join(bad) or text!r}; use {', '.join(RECORDING_FORMATS)} "
            "(or a comma list)"
        )
    return names


def in_range(
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


port = in_range(int, 0, 65535, "a port number", "port must be 0..65535")


def host(text: str) -> str:
    """An address; an IPv6 one may come in brackets, as in a URL (``[::1]``)."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


# the receiver's own tick (0.2 s) wakes it anyway: more would not gather more
gather_ms = in_range(float, 0, 200, "milliseconds", "must be 0..200 ms")
percent = in_range(int, 0, 100, "a whole number", "must be 0..100 (%)")


def positive(kind: type, minimum: float | None = None) -> Callable[[str], Any]:
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


def workers(text: str) -> int:
    if text == "auto":
        from ..receiver.workers import default_workers

        return default_workers()
    count = int(positive(int)(text))
    if count > MAX_WORKERS:  # a typo must not start thousands of processes
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_WORKERS}, got {count} (one per core is the usual: "
            "--workers without N)"
        )
    return count


def route(text: str) -> tuple[str, str]:
    """``GLOB=DEVICE`` (--route): the streams a glob names, and the device they play on."""
    glob, equals, device = text.rpartition("=")
    if not equals or not glob or not device.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not GLOB=DEVICE (e.g. 'guest-*=USB Headset', or 'room-*=none')"
        )
    return glob, device.strip()
