"""One webhook POST, signed (Standard Webhooks and the legacy ``X-Avmon-Signature``).

What is sent, and when, is decided by ``service.events.delivery`` from the committed
event log, off the detection path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import threading
import time
import urllib.error
import urllib.request

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
