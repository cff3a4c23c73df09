"""App factory: ``create_app(settings)``; its lifespan starts and stops the background
services (stream supervisor, webhook sender). Run with ``uvicorn --factory``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service import __version__
from service.api import routes
from service.api.backends import EmbeddedStreams
from service.config import Settings
from service.events.bus import EventBus
from service.events.delivery import Dispatcher
from service.events.model import DefectRecord, FeedEvent
from service.events.sqlite_store import SqliteStore
from service.media import decode_frames, decode_threads
from service.pipeline.runner import StreamSpec
from service.pipeline.supervisor import Supervisor

log = logging.getLogger(__name__)


def _embedded(settings: Settings, app: FastAPI, bus: EventBus) -> Callable[[], None]:
    """One process (or its worker processes): registry, defects and the event log in
    SQLite, under ``AVMON_DATA_DIR`` when set; streams saved there run again."""
    store = SqliteStore(settings.data_dir, settings.max_defects, settings.webhook_retention_s)
    app.state.store = store
    saved = store.streams()
    if settings.workers > 1:
        from service.pipeline.workers import WorkerPool

        pool = WorkerPool(
            settings.workers,
            store,
            bus,
            {
                "pod_name": settings.pod_name,
                "no_signal_s": settings.no_signal_s,
                "timeout_s": settings.source_timeout_s,
                "decode_threads": settings.decode_threads,
                "decode_frames": settings.decode_frames,
                "workers": settings.workers,
                "allowlist": settings.source_allowlist,
                "denylist": settings.source_denylist,
            },
        )
        pool.start()
        for _, doc in saved:
            pool.run(StreamSpec(**doc), store.query(doc["id"], open_=True))
        app.state.supervisor = pool  # the same reads: status, metrics
        app.state.streams = pool
        return pool.stop
    supervisor = _supervisor(settings, store, bus)
    for _, doc in saved:
        # Its open defects are continued (same ids) or closed by the new runner.
        supervisor.run(StreamSpec(**doc), store.query(doc["id"], open_=True))
    app.state.supervisor = supervisor
    app.state.streams = EmbeddedStreams(supervisor, settings.pod_name, store)
    return lambda: supervisor.stop_all(wait=2.0)


def _cluster(settings: Settings, app: FastAPI, bus: EventBus) -> Callable[[], None]:
    """Cluster member: registry and defects in Redis, units handed out by the coordinator."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from service.api.backends import ClusterStreams
    from service.coordination import keys
    from service.coordination.cluster import Coordinator
    from service.coordination.host import ClusterHost
    from service.events.kept import EventKeeper
    from service.events.redis_store import RedisDefectStore

    # No client-side retries: redis-py's default retries turn one refused connection
    # into ~3.5 s of waiting, longer than a lease's margin, and the coordinator already
    # handles a failed call on its next tick (0.2 s later).
    client = redis.Redis.from_url(
        settings.redis_url or "",
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )
    receivers = [keys.webhook_receiver(url) for url in settings.webhook_urls]
    store = RedisDefectStore(
        client, settings.pod_name, settings.max_defects, EventKeeper(client, receivers)
    )
    supervisor = _supervisor(settings, store, bus)
    host = ClusterHost(supervisor, client, store, _deletion_cost(settings))
    supervisor.epoch_of = host.epoch_of
    coordinator = Coordinator(
        client,
        settings.pod_name,
        host,
        lease_ttl=settings.lease_ttl,
        max_units=settings.max_units,
        unit_log=os.environ.get("AVMON_UNIT_LOG"),
    )
    supervisor.on_first_frame = lambda spec: coordinator.analysing(spec.id, spec.groups)
    app.state.store = store
    app.state.supervisor = supervisor
    app.state.coordinator = coordinator
    app.state.streams = ClusterStreams(client, supervisor, coordinator)
    feed = FeedListener(client, bus)
    coordinator.start()
    feed.start()
    done = threading.Event()
    stopping = threading.Lock()

    def stop() -> None:
        # Called by the SIGTERM thread and by the lifespan's end: the second caller waits
        # for the first, or the process would exit in the middle of the handoff.
        with stopping:
            if done.is_set():
                return
            coordinator.leave()  # hand units to successors first
            supervisor.stop_all(wait=1.0)
            feed.stop()
            done.set()

    app.state.on_terminate = stop
    _handoff_on_sigterm(stop)
    return stop


def _handoff_on_sigterm(stop: Callable[[], None]) -> None:
    """Start the handoff the moment SIGTERM arrives, before the server waits for open
    connections to close (an SSE client would hold a graceful shutdown for seconds).
    Chains to the server's own handler, so this works under plain ``uvicorn`` too."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        threading.Thread(target=stop, name="handoff", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    with contextlib.suppress(ValueError):  # not the main thread (a test harness)
        signal.signal(signal.SIGTERM, on_term)


def _deletion_cost(settings: Settings) -> Any:
    if not settings.k8s_deletion_cost:
        return None
    from service import k8s

    try:
        return k8s.in_cluster(settings.pod_name)
    except Exception as exc:  # not in a cluster, or no service account: run without it
        log.warning("pod-deletion-cost disabled: %s", exc)
        return None


def _supervisor(settings: Settings, store: Any, bus: EventBus) -> Supervisor:
    return Supervisor(
        store,
        bus,
        settings.pod_name,
        no_signal_s=settings.no_signal_s,
        timeout_s=settings.source_timeout_s,
        policy=settings.address_policy(),
    )


class FeedListener:
    """Cluster mode: every member's defect events (Redis pub/sub) to this member's SSE."""

    def __init__(self, client: Any, bus: EventBus) -> None:
        self.client = client
        self.bus = bus
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import redis

        from service.coordination import keys

        while not self._stop.is_set():
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(keys.EVENTS)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    try:
                        doc = json.loads(msg["data"])
                        event = FeedEvent(doc["kind"], DefectRecord.from_json(doc["defect"]))
                    except (ValueError, KeyError, TypeError) as exc:
                        # Logged and skipped: one bad message must not end the feed.
                        log.warning("malformed feed message skipped: %s", exc)
                        continue
                    self.bus.deliver(event)
            except redis.RedisError:
                self._stop.wait(0.5)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    decode_threads.configure(settings.decode_threads)
    decode_frames.configure(settings.decode_frames)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cluster = settings.redis_url is not None
        bus = EventBus(feed_local=not cluster)
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        app.state.settings = settings
        app.state.bus = bus
        stop = _cluster(settings, app, bus) if cluster else _embedded(settings, app, bus)
        sender: Dispatcher | None = None
        if settings.webhook_urls:
            # Webhooks come from the committed event log (Redis or SQLite), never from a
            # member's local events.
            event_log: Any = app.state.store
            errors: tuple[type[Exception], ...] = ()
            if cluster:
                import redis

                from service.events.event_log import RedisEventLog

                event_log = RedisEventLog(app.state.store.r)
                errors = (redis.ConnectionError, redis.TimeoutError)
            sender = Dispatcher(
                event_log,
                settings.webhook_urls,
                secret,
                settings.pod_name,
                retention_s=settings.webhook_retention_s,
                errors=errors,
            )
            sender.start()
        mode = "cluster member" if cluster else "embedded"
        log.info("avmon %s ready as %s (%s)", __version__, settings.pod_name, mode)
        try:
            yield
        finally:
            stop()
            if sender is not None:
                sender.stop(wait=1.0)  # a Redis read blocks for at most 0.5 s

    app = FastAPI(
        title="avmon",
        version=__version__,
        description="Real-time monitoring of live audio/video streams.",
        lifespan=lifespan,
    )
    app.include_router(routes.api, prefix="/api/v1")
    app.include_router(routes.root)
    app.state.settings = settings
    app.state.policy = settings.address_policy()
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    _redis_handlers(app)
    return app


class BodyLimit:
    """413 for a request body over ``limit`` bytes, declared or streamed (chunked), before
    anything parses it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(send, self.limit)
            return
        seen = 0
        refused = False

        async def limited() -> Any:
            # Past the limit: answer 413 now and tell the app the client left, so it
            # stops reading and whatever it answers is not sent.
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not refused:
                    refused = True
                    await _too_large(send, self.limit)
                if refused:
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, guarded_send)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _redis_handlers(app: FastAPI) -> None:
    """Cluster mode: a Redis outage answers 503 (retry), never 500."""
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        return

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "Redis is unreachable; try again"}, status_code=503)

    app.add_exception_handler(redis.ConnectionError, handler)
    app.add_exception_handler(redis.TimeoutError, handler)


def create_app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory service.api.app:create_app_from_env``."""
    settings = Settings()
    # uvicorn configures only its own loggers: without this, avmon's warnings reach the
    # container log unformatted and its info (handoffs) not at all.
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    return create_app(settings)
