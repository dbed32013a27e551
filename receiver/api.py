"""The receiver's answers for scripts: ``/healthz``, ``/metrics`` (Prometheus), and the
streams' figures as JSON (docs/PROTOCOL.md §10)."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .access import caller_role, receiver_of, unauthorized
from .auth import MAY_WATCH
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
