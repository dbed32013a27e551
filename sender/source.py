"""What a source of the sender's audio is: it hands :class:`~micwire.common.framing.Block` s
on one timeline to a *sink*, a plain function called on the event loop's thread as each
block is captured (sender/sources.py opens the source a ``micwire send`` asks for)."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..common.framing import Block

Samples = npt.NDArray[np.int16]
Sink = Callable[[Block], None]


class Source(abc.ABC):
    """A live source of blocks. ``stop()`` ends it; blocks captured before are handed on."""

    def __init__(self, rate_hz: int, channels: int) -> None:
        self.rate_hz = rate_hz
        self.channels = channels
        #: Times the device reported an input overflow (the OS lost samples).
        self.input_overflows = 0
        self._stop = asyncio.Event()
        self.description = ""
        #: How audio leaves the source, when that is worth saying in the log.
        self.note = ""

    def stop(self) -> None:
        """End the stream (call on the event loop's thread)."""
        self._stop.set()

    @abc.abstractmethod
    async def run(self, sink: Sink) -> None:
        """Hand blocks in timeline order to ``sink`` until stopped or exhausted. An error
        raised by the sink ends the source and is raised here."""

    async def _until_stopped(self, done: asyncio.Future[None]) -> None:
        """Wait for ``done`` (exhausted, or failed: raised) or a stop."""
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        waits: list[asyncio.Future[Any]] = [done, stopped]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if done.done():
            done.result()


def fail(done: asyncio.Future[None], exc: BaseException) -> None:
    """End a source's ``run()`` with ``exc``, raised from a callback (whose own errors
    would be lost), unless it has already ended."""
    if not done.done():
        done.set_exception(exc)
