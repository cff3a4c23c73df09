"""Webhook delivery from the committed event log: at-least-once, in commit order, with
retention (DESIGN.md section 6, G10).

One thread per receiver in every process; one process at a time *holds* a receiver (a
lease in the log's store, renewed as it goes) and delivers to it. The holder reads the
entries after the receiver's cursor, POSTs them one by one in order and moves the cursor
after each success (or a 4xx refusal, which no retry would change). A failure keeps the
cursor where it is and retries the same event with backoff -- for as long as the receiver
is down, up to the retention. A holder that dies mid-POST leaves the cursor behind, so
its successor repeats at most that event (same ``webhook-id``: receivers deduplicate).

After Redis restarted empty, events the lost log held that some receiver had not had are
re-staged by the members that committed them (``service.events.kept``); the holder
delivers those first, in their original order and with their original ids.

Entries older than ``retention_s`` when their turn comes, and entries trimmed from the
log before delivery (a gap in sequence numbers), are given up and counted as
``expired``. Each receiver's lag (age of its oldest undelivered event) and backlog are
exported by its holder.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from service.coordination.keys import webhook_receiver
from service.events.event_log import Cursor, EventLog, LoggedEvent
from service.events.webhooks import TIMEOUT_S, post
from service.observability import metrics

log = logging.getLogger(__name__)

BATCH = 50
BLOCK_S = 0.5  # below the Redis client's socket timeout
HOLD_TTL_S = 3 * TIMEOUT_S
RENEW_EVERY_S = TIMEOUT_S  # while backing off
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0
DEFAULT_RETENTION_S = 24 * 3600.0


class Dispatcher:
    def __init__(
        self,
        event_log: EventLog,
        urls: list[str],
        secret: str | None,
        who: str,
        retention_s: float = DEFAULT_RETENTION_S,
        errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.log = event_log
        self.urls = urls
        self.secret = secret
        self.who = who
        self.retention_s = retention_s
        self.errors = errors  # the store's "unreachable" errors: wait, do not log traces
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index, url in enumerate(self.urls):
            t = threading.Thread(
                target=self._run, args=(str(index), url), name=f"webhook-{index}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self, wait: float = 0.0) -> None:
        """Stop delivering; give up each receiver whose deliverer ended within ``wait``,
        so another process carries on at once (one still in a POST keeps its hold until
        it runs out: releasing under it could deliver an event twice)."""
        self._stop.set()
        deadline = time.monotonic() + wait
        for t, url in zip(self._threads, self.urls, strict=False):
            t.join(max(0.0, deadline - time.monotonic()))
            if not t.is_alive():
                with contextlib.suppress(*self.errors):
                    self.log.release(webhook_receiver(url), self.who)

    def _run(self, index: str, url: str) -> None:
        receiver = webhook_receiver(url)
        backoff = BACKOFF_MIN_S
        while not self._stop.is_set():
            try:
                if not self.log.hold(receiver, self.who, HOLD_TTL_S):
                    _forget_gauges(index)  # another process delivers to this receiver
                    self._stop.wait(1.0)
                    continue
                # Every POST must end before the hold could run out.
                deliver_until = time.monotonic() + HOLD_TTL_S - TIMEOUT_S - 1.0
                recovered = self.log.recovered(receiver, BATCH)
                if recovered is None:  # members are re-staging a lost log: wait for them
                    self._stop.wait(BLOCK_S)
                    continue
                cursor = self.log.cursor(receiver)
                # What a lost log held goes first: it was committed before the new log.
                entries = recovered or self.log.after(cursor, BATCH, BLOCK_S)
                self._gauges(index, cursor, entries)
                for entry in entries:
                    if self._stop.is_set() or time.monotonic() >= deliver_until:
                        break
                    result = self._deliver(url, cursor, entry)
                    metrics.WEBHOOK_RESULTS.labels(result=result).inc()
                    if result == "failed":
                        self._back_off(receiver, backoff)  # the same event again, later
                        backoff = min(BACKOFF_MAX_S, backoff * 2)
                        break
                    backoff = BACKOFF_MIN_S
                    if entry.recovered:
                        done = self.log.settle(receiver, self.who, entry)
                    else:
                        cursor = Cursor(entry.id, entry.seq)
                        done = self.log.advance(receiver, self.who, cursor)
                    if not done:
                        break  # no longer the holder
            except self.errors:
                self._stop.wait(1.0)
            except Exception:
                log.exception("webhook %s: dispatcher error", index)
                self._stop.wait(1.0)

    def _back_off(self, receiver: str, seconds: float) -> None:
        """Wait before retrying, renewing the hold meanwhile: one process keeps a receiver
        through an outage (its gauges are the ones that count), instead of the hold
        passing back and forth between processes sleeping out their backoff."""
        until = time.monotonic() + seconds
        while not self._stop.wait(min(RENEW_EVERY_S, max(0.0, until - time.monotonic()))):
            if time.monotonic() >= until or not self.log.hold(receiver, self.who, HOLD_TTL_S):
                return

    def _deliver(self, url: str, cursor: Cursor | None, entry: LoggedEvent) -> str:
        if cursor is not None and not entry.recovered and entry.seq > cursor.seq + 1:
            lost = entry.seq - cursor.seq - 1
            metrics.WEBHOOK_RESULTS.labels(result="expired").inc(lost)
            log.warning("%d events were trimmed from the log before delivery", lost)
        if not entry.body or time.time() - entry.committed_at > self.retention_s:
            return "expired"
        return post(url, entry.body, self.secret, self._stop, entry.id, retries=())

    def _gauges(self, index: str, cursor: Cursor | None, entries: list[LoggedEvent]) -> None:
        lag = time.time() - entries[0].committed_at if entries else 0.0
        metrics.WEBHOOK_LAG.labels(receiver=index).set(max(0.0, lag))
        done = cursor.seq if cursor is not None else 0
        backlog = max(0, self.log.last_seq() - done) if entries else 0
        if entries and entries[0].recovered:
            backlog += len(entries)
        metrics.WEBHOOK_BACKLOG.labels(receiver=index).set(backlog)


def _forget_gauges(index: str) -> None:
    for gauge in (metrics.WEBHOOK_LAG, metrics.WEBHOOK_BACKLOG):
        with contextlib.suppress(KeyError):  # never set here
            gauge.remove(index)
