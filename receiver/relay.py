"""A browser's WebSocket carried to another worker of ``--workers N`` (the one holding the
stream it listens to), over that worker's Unix socket: messages go both ways unchanged
until either side closes."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
from aiohttp import web


async def relay(request: web.Request, socket_path: Path) -> web.StreamResponse:
    url = f"http://worker{request.rel_url}"
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            upstream = await session.ws_connect(url, compress=0, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 404:
                raise web.HTTPNotFound(text="no such stream\n") from exc
            raise web.HTTPServiceUnavailable(text="the stream's worker refused\n") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise web.HTTPServiceUnavailable(text="the stream's worker is not answering\n") from exc
        ws = web.WebSocketResponse(compress=False, heartbeat=20.0, timeout=2.0)
        await ws.prepare(request)
        async with upstream:
            down = asyncio.create_task(_pipe(upstream, ws))
            up = asyncio.create_task(_pipe(ws, upstream))
            try:
                await asyncio.wait((down, up), return_when=asyncio.FIRST_COMPLETED)
            finally:
                down.cancel()
                up.cancel()
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close(code=upstream.close_code or 1001)
        return ws


async def _pipe(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        async for message in source:
            if message.type is aiohttp.WSMsgType.BINARY:
                await sink.send_bytes(message.data)
            elif message.type is aiohttp.WSMsgType.TEXT:
                await sink.send_str(message.data)
