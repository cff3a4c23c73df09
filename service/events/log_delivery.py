"""Cluster mode webhooks, fed from the committed event log (a Redis Stream).

Only a fenced commit appends to the log (scripts.WRITE_DEFECT), so a member whose lease
is gone cannot make a webhook happen, and an event queued during a Redis outage is
delivered once it commits. Each receiver has its own consumer group, so its progress is
its own; every member consumes for every receiver, and Redis hands each entry to one of
them. An entry is acknowledged once delivered (or refused with a 4xx); until then it
stays pending: the consumer retries its own pending entries first, in order, with
backoff, and entries left pending by a member that died are claimed by another after
``CLAIM_IDLE_MS``. At-least-once: a member that dies between POST and XACK repeats one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from service.coordination import keys
from service.events.webhooks import post

log = logging.getLogger(__name__)

BATCH = 20
BLOCK_MS = 500  # below the client's socket timeout
CLAIM_IDLE_MS = 15_000
BACKOFF_MAX_S = 30.0


class LogDispatcher:
    def __init__(
        self,
        client: redis.Redis,
        urls: list[str],
        secret: str | None,
        consumer: str,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.r = client
        self.urls = urls
        self.secret = secret
        self.consumer = consumer
        self.on_result = on_result or (lambda result: None)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for url in self.urls:
            t = threading.Thread(target=self._run, args=(url,), name="webhook-log", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def _run(self, url: str) -> None:
        group = keys.webhook_group(url)
        ready = False
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if not ready:
                    self._create_group(group)
                    ready = True
                entries = self._next(group)
                for entry_id, fields in entries:
                    body = (fields or {}).get(b"event")
                    event_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    result = (
                        "rejected"
                        if body is None
                        else post(url, body, self.secret, self._stop, event_id)
                    )
                    self.on_result(result)
                    if result == "failed":
                        # Keep it pending and the order with it: retry it first, later.
                        self._stop.wait(backoff)
                        backoff = min(BACKOFF_MAX_S, backoff * 2)
                        break
                    backoff = 0.5
                    self.r.xack(keys.EVENT_LOG, group, entry_id)
            except (redis.ConnectionError, redis.TimeoutError):
                self._stop.wait(1.0)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    ready = False  # Redis restarted empty: create the group again
                else:
                    log.warning("event log read failed: %s", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("webhook %s: dispatcher error", url)
                self._stop.wait(1.0)

    def _create_group(self, group: str) -> None:
        try:
            # "0": a group created late (this receiver newly configured, or Redis came
            # back empty and members re-committed) still sees what the log holds.
            self.r.xgroup_create(keys.EVENT_LOG, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _next(self, group: str) -> list[tuple[Any, Any]]:
        """My own pending entries first (in order), then ones a dead member left, then new."""
        r: Any = self.r  # redis-py's stream replies are loosely typed
        mine = r.xreadgroup(group, self.consumer, {keys.EVENT_LOG: "0"}, count=BATCH)
        if mine and mine[0][1]:
            return list(mine[0][1])
        claimed = r.xautoclaim(
            keys.EVENT_LOG, group, self.consumer, CLAIM_IDLE_MS, "0-0", count=BATCH
        )
        if claimed and claimed[1]:
            return list(claimed[1])
        new = r.xreadgroup(group, self.consumer, {keys.EVENT_LOG: ">"}, count=BATCH, block=BLOCK_MS)
        return list(new[0][1]) if new else []
