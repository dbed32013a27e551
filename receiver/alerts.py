"""Alerts to a webhook: each raised or cleared alert POSTed as JSON to ``--webhook URL``.

Posting never blocks audio: events wait in a bounded queue (the oldest goes when it is
full) and one task delivers them in order, retrying a failed POST with back-off
(0.5 s doubling to 30 s) for up to ``RETRY_FOR_S``, then giving that event up (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from typing import Any

import aiohttp

log = logging.getLogger("micwire.receiver")
QUEUE = 256
RETRY_FOR_S = 300.0
TIMEOUT_S = 5.0


class Webhook:
    def __init__(self, url: str) -> None:
        self.url = url
        self._events: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def post(self, event: dict[str, Any]) -> None:
        """Queue an event; never waits."""
        self._events.append(event)
        while len(self._events) > QUEUE:
            self._events.popleft()
        self._ready.set()

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._events:
                event = self._events[0]
                if not await self._deliver(event):
                    log.error("webhook %s: gave up on %s alert", self.url, event.get("alert"))
                if self._events and self._events[0] is event:
                    self._events.popleft()

    async def _deliver(self, event: dict[str, Any]) -> bool:
        assert self._session is not None
        started, delay = time.monotonic(), 0.5
        while True:
            try:
                async with self._session.post(self.url, json=event) as response:
                    if response.status < 300:
                        return True
                    why = f"HTTP {response.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                why = str(exc) or type(exc).__name__
            if time.monotonic() - started > RETRY_FOR_S:
                return False
            log.warning("webhook %s failed (%s); retrying in %.1f s", self.url, why, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(30.0, delay * 2)

    async def flush(self, timeout_s: float) -> None:
        """Give queued events a little time to go out (the receiver is stopping)."""
        deadline = time.monotonic() + timeout_s
        while self._events and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
