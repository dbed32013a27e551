"""The receiver's answers for scripts: ``/healthz``, ``/metrics`` (Prometheus), and the
streams' figures as JSON (docs/PROTOCOL.md §10)."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..common.errors import MixSettingError
from .access import caller_role, receiver_of, unauthorized
from .auth import FULL, LISTEN, MAY_WATCH, SEND
from .control import merge_metrics
from .metrics import registry_for


async def healthz(request: web.Request) -> web.StreamResponse:
    rx = receiver_of(request)
    status = HTTPStatus.SERVICE_UNAVAILABLE if rx.stopping else HTTPStatus.OK
    body = {
        "status": "stopping" if rx.stopping else "ok",
        "live": len(rx.streams.live),
        "parked": len(rx.streams.parked),
    }
    if rx.worker is not None:  # with --workers: this worker's streams, and which it is
        body["worker"] = rx.config.worker
    return web.json_response(body, status=status)


async def metrics(request: web.Request) -> web.StreamResponse:
    if caller_role(request, MAY_WATCH) is None:
        return unauthorized(request, "metrics")
    rx = receiver_of(request)
    body = generate_latest(registry_for(rx))
    if rx.worker is not None:  # every worker's figures, as one receiver's
        body = merge_metrics([body.decode(), *await rx.worker.others("metrics")])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def streams_json(request: web.Request) -> web.StreamResponse:
    if caller_role(request, MAY_WATCH) is None:
        return unauthorized(request, "api")
    return web.json_response(await receiver_of(request).monitor.snapshot())


async def patch_stream(request: web.Request) -> web.StreamResponse:
    """``PATCH /api/streams/{name}``: a stream's gain, mute, solo and pan (full role), as a
    JSON object of the fields to change; the answer is its whole mix state."""
    role = caller_role(request, frozenset({FULL, LISTEN, SEND}))
    if role is None:
        return unauthorized(request, "mix")
    if role != FULL:
        return web.json_response(
            {"error": "changing the mix needs the full token"}, status=HTTPStatus.FORBIDDEN
        )
    rx = receiver_of(request)
    name = request.match_info["name"]
    if name not in rx.streams.live and name not in rx.streams.parked:
        return web.json_response({"error": f"no stream {name!r} here"}, status=HTTPStatus.NOT_FOUND)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response(
            {"error": "the body must be a JSON object"}, status=HTTPStatus.BAD_REQUEST
        )
    try:
        settings = rx.mix_state.patch(name, body)
    except MixSettingError as exc:
        return web.json_response({"error": str(exc)}, status=HTTPStatus.BAD_REQUEST)
    return web.json_response({"stream": name, "mix": settings.to_json()})
