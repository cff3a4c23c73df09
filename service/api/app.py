"""App factory: ``create_app(settings)``; its lifespan starts and stops the background
services (stream supervisor, webhook sender). Run with ``uvicorn --factory``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.api import routes
from service.config import Settings
from service.events.bus import EventBus
from service.events.store import DefectStore
from service.events.webhooks import WebhookSender
from service.observability import metrics
from service.pipeline.supervisor import Supervisor

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = DefectStore(settings.max_defects)
        bus = EventBus()
        sender = None
        if settings.webhook_urls:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            sender = WebhookSender(
                settings.webhook_urls,
                secret,
                on_result=lambda result: metrics.WEBHOOK_RESULTS.labels(result=result).inc(),
            )
            sender.start()
            bus.add_sink(sender)
        supervisor = Supervisor(
            store,
            bus,
            settings.pod_name,
            no_signal_s=settings.no_signal_s,
            timeout_s=settings.source_timeout_s,
        )
        app.state.settings = settings
        app.state.store = store
        app.state.bus = bus
        app.state.supervisor = supervisor
        log.info("avmon %s ready as %s (embedded)", __version__, settings.pod_name)
        try:
            yield
        finally:
            supervisor.stop_all(wait=2.0)
            if sender is not None:
                sender.stop()

    app = FastAPI(
        title="avmon",
        version=__version__,
        description="Real-time monitoring of live audio/video streams.",
        lifespan=lifespan,
    )
    app.include_router(routes.api, prefix="/api/v1")
    app.include_router(routes.root)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory service.api.app:create_app_from_env``."""
    return create_app(Settings())
