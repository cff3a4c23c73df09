"""HTTP routes: /api/v1 (streams, defects, events, cluster, images) and the root
endpoints (health, readiness, metrics, dashboard)."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.backends import ClusterStreams, EmbeddedStreams
from service.api.policy import PolicyError, check_source
from service.api.schemas import Cluster, DefectEvent, Stream, StreamCreate
from service.config import Settings
from service.detectors.registry import (
    GROUPS,
    DetectorConfigError,
    resolve_names,
    validate_thresholds,
)
from service.events.store import DefectStore
from service.pipeline.supervisor import DuplicateStreamError, Supervisor

HEARTBEAT_S = 15.0
JPEG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}},
    404: {"description": "not available"},
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _supervisor(request: Request) -> Supervisor:
    supervisor: Supervisor = request.app.state.supervisor
    return supervisor


Streams = EmbeddedStreams | ClusterStreams  # or a WorkerPool (same methods)


def _streams(request: Request) -> Streams:
    streams: Streams = request.app.state.streams
    return streams


def _store(request: Request) -> DefectStore:
    store: DefectStore = request.app.state.store
    return store


def require_token(request: Request) -> None:
    """Bearer token on /api/v1 when AVMON_API_TOKEN is set."""
    token = _settings(request).api_token
    if token is None:
        return
    given = request.headers.get("authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


def _unprocessable(field: str, message: str) -> HTTPException:
    loc = ["body", *field.split(".")]
    return HTTPException(422, [{"loc": loc, "msg": message, "type": "value_error"}])


# Documented on every /api/v1 operation so the OpenAPI contract lists every status we
# answer (schemathesis status_code_conformance): 401 from require_token.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong bearer token (when AVMON_API_TOKEN is set)"},
}

api = APIRouter(dependencies=[Depends(require_token)], responses=AUTH_ERRORS)
root = APIRouter()

SupervisorDep = Annotated[Supervisor, Depends(_supervisor)]
# Pydantic also accepts Unix seconds for a datetime: documented rather than refused.
Since = Annotated[
    datetime | None,
    Query(description="changed (started or ended) at or after: ISO-8601 or Unix seconds"),
]
StoreDep = Annotated[DefectStore, Depends(_store)]


StreamsDep = Annotated[Any, Depends(_streams)]


def _status(streams: Streams, stream_id: str) -> dict[str, Any]:
    status = streams.get(stream_id)
    if status is None:
        raise HTTPException(404, f"no stream {stream_id!r}")
    return status


# ---------------------------------------------------------------------- streams
@api.post(
    "/streams",
    status_code=201,
    response_model=Stream,
    # Statuses we answer that were undocumented: 400 when the body is not parseable at all
    # (FastAPI answers 400, not 422, e.g. for bytes that are not UTF-8), 409 duplicate name.
    # 422 (auto-documented) also covers policy refusals: same detail[].loc shape.
    responses={
        400: {"description": "malformed request body"},
        409: {"description": "a stream with this name already exists"},
        413: {"description": "request body larger than AVMON_MAX_BODY_BYTES"},
        429: {"description": "AVMON_MAX_STREAMS streams already registered"},
    },
)
def create_stream(body: StreamCreate, request: Request) -> dict[str, Any]:
    settings = _settings(request)
    try:
        url = check_source(body.url, settings, request.app.state.policy)
    except PolicyError as exc:
        raise _unprocessable(exc.field, str(exc)) from None
    try:
        names = resolve_names(body.detectors)
        validate_thresholds(body.thresholds)
    except DetectorConfigError as exc:
        raise _unprocessable(exc.field, exc.message) from None
    enabled = [n for n in names if _group_of(n) in settings.detector_groups]
    if not enabled:
        raise _unprocessable("detectors", "none of these detectors is enabled on this service")
    streams = _streams(request)
    if len(streams.list()) >= settings.max_streams:
        raise HTTPException(429, f"at most {settings.max_streams} streams (AVMON_MAX_STREAMS)")
    try:
        return streams.create(
            body.name,
            url,
            enabled,
            thresholds=dict(body.thresholds or {}),
            labels=dict(body.labels or {}),
            pace=body.pace,
            loop=body.loop,
        )
    except DuplicateStreamError:
        raise HTTPException(409, f"a stream named {body.name!r} already exists") from None


def _group_of(name: str) -> str:
    return next(g for g, names in GROUPS.items() if name in names)


@api.get("/streams", response_model=list[Stream])
def list_streams(streams: StreamsDep) -> list[dict[str, Any]]:
    return streams.list()


@api.get("/streams/{stream_id}", response_model=Stream, responses={404: {}})
def get_stream(stream_id: str, streams: StreamsDep) -> dict[str, Any]:
    return _status(streams, stream_id)


@api.delete("/streams/{stream_id}", status_code=204, responses={404: {}})
def delete_stream(stream_id: str, streams: StreamsDep) -> Response:
    if not streams.delete(stream_id):
        raise HTTPException(404, f"no stream {stream_id!r}")
    return Response(status_code=204)


@api.get("/streams/{stream_id}/thumbnail.jpg", response_class=Response, responses=JPEG)
def thumbnail(stream_id: str, streams: StreamsDep) -> Response:
    _status(streams, stream_id)
    jpeg = streams.thumbnail(stream_id)
    if jpeg is None:
        raise HTTPException(404, "no picture yet")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------- defects
def _defects(
    store: DefectStore,
    stream_id: str | None,
    open_: bool | None,
    since: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    since_ts = since.timestamp() if since is not None else None
    return [r.as_json() for r in store.query(stream_id, open_, since_ts, limit)]


@api.get("/streams/{stream_id}/defects", response_model=list[DefectEvent], responses={404: {}})
def stream_defects(
    stream_id: str,
    streams: StreamsDep,
    store: StoreDep,
    open: bool | None = None,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    _status(streams, stream_id)
    return _defects(store, stream_id, open, since, limit)


@api.get("/defects", response_model=list[DefectEvent])
def all_defects(
    store: StoreDep,
    open: bool | None = None,
    since: Since = None,
    stream_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    return _defects(store, stream_id, open, since, limit)


@api.get("/defects/{defect_id}/evidence.jpg", response_class=Response, responses=JPEG)
def evidence(defect_id: str, store: StoreDep) -> Response:
    jpeg = store.evidence(defect_id)
    if jpeg is None:
        raise HTTPException(404, f"no evidence for defect {defect_id!r}")
    return Response(jpeg, media_type="image/jpeg")


# ---------------------------------------------------------------------- live feed
@api.get(
    "/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        429: {"description": "AVMON_MAX_SSE_SUBSCRIBERS feeds already open"},
    },
)
async def events(request: Request) -> StreamingResponse:
    """Server-sent events: one ``event: defect`` message per defect open or close; the
    data is ``{"kind": "open"|"close", "defect": DefectEvent}``. (Not ``event: open``:
    browsers fire their own "open" event when an EventSource connects.)"""
    bus = request.app.state.bus
    limit = _settings(request).max_sse_subscribers
    if bus.subscribers >= limit:
        raise HTTPException(429, f"at most {limit} event feeds (AVMON_MAX_SSE_SUBSCRIBERS)")
    queue = bus.subscribe()

    async def feed() -> AsyncIterator[str]:
        try:
            yield ": avmon event feed\n\n"
            while not await request.is_disconnected():
                try:
                    ev = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                if ev is None:
                    return
                yield f"event: defect\ndata: {json.dumps(ev.as_json())}\n\n"
        finally:
            bus.unsubscribe(queue)

    return StreamingResponse(
        feed(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


# ---------------------------------------------------------------------- cluster
@api.get("/cluster", response_model=Cluster)
def cluster(streams: StreamsDep) -> dict[str, Any]:
    """Members, units, owners and epochs (embedded: this process owns every unit)."""
    return streams.cluster()


# ---------------------------------------------------------------------- root
@root.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@root.get("/readyz", responses={503: {}})
def readyz(request: Request) -> dict[str, str]:
    """Ready to own work; 503 while starting, leaving, or (cluster) Redis is unreachable."""
    if getattr(request.app.state, "supervisor", None) is None:
        raise HTTPException(503, "starting")
    coordinator = getattr(request.app.state, "coordinator", None)
    if coordinator is not None and not coordinator.ready:
        raise HTTPException(503, "not ready: Redis unreachable or leaving")
    return {"status": "ready"}


@root.get("/metrics", response_class=Response)
def prometheus_metrics(supervisor: SupervisorDep) -> Response:
    supervisor.update_state_metrics()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@root.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> HTMLResponse:
    page = resources.files("service.api").joinpath("dashboard.html").read_text()
    return HTMLResponse(page)
