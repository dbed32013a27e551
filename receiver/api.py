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


def _error(status: HTTPStatus, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _mix_change(request: web.Request) -> tuple[object, web.Response | None]:
    """The JSON body of a change to the mix, or the answer that refuses it (the full role
    only: the mix is the receiver's, not one listener's)."""
    role = caller_role(request, frozenset({FULL, LISTEN, SEND}))
    if role is None:
        return None, unauthorized(request, "mix")
    if role != FULL:
        return None, _error(HTTPStatus.FORBIDDEN, "changing the mix needs the full token")
    try:
        return await request.json(), None
    except (ValueError, RecursionError):  # (RecursionError: JSON nested thousands deep)
        return None, _error(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")


async def patch_stream(request: web.Request) -> web.StreamResponse:
    """``PATCH /api/streams/{name}``: a stream's gain, mute, solo and pan (full role), as a
    JSON object of the fields to change; the answer is its whole mix state."""
    body, refused = await _mix_change(request)
    if refused is not None:
        return refused
    rx = receiver_of(request)
    name = request.match_info["name"]
    if name not in rx.streams.live and name not in rx.streams.parked:
        return _error(HTTPStatus.NOT_FOUND, f"no stream {name!r} here")
    try:
        settings = rx.mix_state.patch(name, body)
    except MixSettingError as exc:
        return _error(HTTPStatus.BAD_REQUEST, str(exc))
    return web.json_response({"stream": name, "mix": settings.to_json()})


async def patch_output(request: web.Request) -> web.StreamResponse:
    """``PATCH /api/outputs/{device}``: an output device's master gain (full role)."""
    body, refused = await _mix_change(request)
    if refused is not None:
        return refused
    rx = receiver_of(request)
    name = request.match_info["device"]
    mixers = rx.streams.mixers
    if mixers is None or not mixers.plays_on(name):
        return _error(HTTPStatus.NOT_FOUND, f"no output device {name!r} is playing here")
    try:
        master = rx.mix_state.patch_master(name, body)
    except MixSettingError as exc:
        return _error(HTTPStatus.BAD_REQUEST, str(exc))
    return web.json_response({"device": name, "master": master.to_json()})
