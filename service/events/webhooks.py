"""Webhook delivery: signed JSON POSTs with retries, off the detection path.

One worker thread per URL with a bounded queue: a slow or dead receiver fills its own
queue (oldest events are dropped and counted), never the pipeline's.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from service.events.model import FeedEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Avmon-Signature"
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
TIMEOUT_S = 5.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_headers(secret: str, event_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks signing: ``webhook-signature`` is ``v1,`` + base64 of
    HMAC-SHA256 over ``id.timestamp.body``, so receivers can verify it with the
    ``standardwebhooks`` library and refuse replays (old timestamps, seen ids). A secret
    in the standard's ``whsec_<base64>`` form is decoded; any other string is the key's
    bytes as they are (a receiver then passes ``whsec_`` + base64 of it)."""
    key = (
        base64.b64decode(secret[len("whsec_") :] + "==")
        if secret.startswith("whsec_")
        else secret.encode()
    )
    stamp = str(int(time.time()))
    mac = hmac.new(key, f"{event_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": event_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


class WebhookSender:
    def __init__(
        self,
        urls: list[str],
        secret: str | None,
        on_result: Callable[[str], None] | None = None,
        max_queue: int = 1000,
    ) -> None:
        self.urls = urls
        self.secret = secret
        self.on_result = on_result or (lambda result: None)
        self._queues = {url: queue.Queue[FeedEvent | None](max_queue) for url in urls}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.dropped = 0

    def start(self) -> None:
        for url, q in self._queues.items():
            t = threading.Thread(target=self._worker, args=(url, q), name="webhook", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for q in self._queues.values():
            with contextlib.suppress(queue.Full):
                q.put_nowait(None)

    def __call__(self, event: FeedEvent) -> None:
        """Enqueue (never blocks): the event bus calls this from pipeline threads."""
        for q in self._queues.values():
            while True:
                try:
                    q.put_nowait(event)
                    break
                except queue.Full:
                    try:
                        q.get_nowait()
                        self.dropped += 1
                        self.on_result("dropped")
                    except queue.Empty:
                        pass

    def _worker(self, url: str, q: queue.Queue[FeedEvent | None]) -> None:
        while not self._stop.is_set():
            event = q.get()
            if event is None:
                return
            try:
                body = json.dumps(event.as_json()).encode()
                event_id = f"{event.record.id}.{event.kind}"  # stable: one open, one close
                self.on_result(post(url, body, self.secret, self._stop, event_id))
            except Exception:  # whatever a receiver does, its worker lives on
                log.exception("webhook %s: delivery failed", url)
                self.on_result("failed")


def post(
    url: str,
    body: bytes,
    secret: str | None,
    stop: threading.Event,
    event_id: str,
    retries: tuple[float, ...] = RETRY_DELAYS,
) -> str:
    """POST one event with retries: "delivered", "rejected" (4xx: never retried) or
    "failed" (retries ran out, or ``stop`` was set). Signed afresh on every attempt, so a
    late delivery carries a current timestamp."""
    headers = {"Content-Type": "application/json", "User-Agent": "avmon"}
    for attempt, delay in enumerate((0.0, *retries)):
        if delay and stop.wait(delay):
            return "failed"
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
            headers.update(standard_headers(secret, event_id, body))
        try:
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                if 200 <= resp.status < 300:
                    return "delivered"
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                log.warning("webhook %s refused event: HTTP %s", url, exc.code)
                return "rejected"
        except (OSError, TimeoutError, http.client.HTTPException, ValueError) as exc:
            # HTTPException: a reply that is not HTTP (BadStatusLine and kin).
            log.info("webhook %s attempt %d failed: %s", url, attempt + 1, exc)
    return "failed"
