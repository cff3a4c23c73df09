"""What a member committed, kept until every webhook receiver has it.

The event log lives in Redis, and a Redis run without persistence (the bundled chart)
that restarts empty loses every entry no receiver has had yet -- a receiver that was
down, or whose holder had just died, would never hear of those defects. So each member
keeps a copy of the events *it* committed until every receiver's cursor has passed them.

The log carries a birth mark (``keys.LOG_BORN``). A member that finds a mark other than
the one it knew (on its next commit or tick) opens a short recovery window and re-stages
its kept events for each receiver that had not had them, in a sorted set scored by their
original position in the lost log. A receiver's holder delivers nothing while the window
is open (every member that knew the old log notices within it), then delivers the
re-staged events first, in their original order and with their original ``webhook-id``,
then the new log. So an ``open`` committed by one member and the ``close`` committed by
its successor still arrive in that order.

Limits, stated: a member killed together with Redis takes its copies with it (only Redis
persistence covers that); a member that notices after the window (stopped meanwhile) has
its events delivered late, possibly after newer ones. The copies are bounded
(``KEEP_MAX``): past it the oldest go, counted in ``avmon_events_kept_dropped_total``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import redis

from service.coordination import keys
from service.coordination.scripts import LOG_BORN
from service.observability import metrics

log = logging.getLogger(__name__)

KEEP_MAX = 10_000
RECOVERY_WINDOW_MS = 3_000  # every live member ticks (0.2 s) many times within it
PRUNE_EVERY_S = 0.2  # every tick: the less it lags, the fewer events re-sent after a loss


@dataclass
class Kept:
    pos: str  # its id in the log it was committed to: its webhook-id, for good
    born: str  # that log's birth mark
    body: bytes
    staged_in: str = ""  # the mark of the log it was last re-staged in
    delivered: set[str] = field(default_factory=set)  # receivers that have it


def score(pos: str) -> int:
    """A log position ("<ms>-<n>") as an exact sortable number."""
    ms, _, n = pos.partition("-")
    return int(ms) * 1000 + int(n or 0)


class EventKeeper:
    def __init__(self, client: redis.Redis, receivers: list[str]) -> None:
        self.r = client
        self.receivers = receivers
        self.born = ""  # the log's birth mark as this member last saw it
        self._kept: deque[Kept] = deque()
        self._lock = threading.Lock()
        self._born_script = client.register_script(LOG_BORN)
        self._pruned = 0.0

    @property
    def active(self) -> bool:
        return bool(self.receivers)

    def __len__(self) -> int:
        return len(self._kept)

    def committed(self, pos: str, born: str, body: bytes) -> None:
        """An event this member just committed to the log ``born``."""
        with self._lock:
            self.born = born
            if not self.receivers:
                return
            if len(self._kept) >= KEEP_MAX:
                self._kept.popleft()
                metrics.EVENTS_KEPT_DROPPED.inc()
            self._kept.append(Kept(pos, born, body))
            metrics.EVENTS_KEPT.set(len(self._kept))

    def sync(self) -> None:
        """Each coordinator tick: learn the log's mark; re-stage what the log lost;
        forget what every receiver has had."""
        born = str(
            _s(
                self._born_script(
                    keys=[keys.LOG_BORN, keys.LOG_RECOVERING], args=[self.born, RECOVERY_WINDOW_MS]
                )
            )
        )
        with self._lock:
            self.born = born
            lost = [k for k in self._kept if born not in (k.born, k.staged_in)]
        if lost:
            self._stage(lost, born)
        if time.monotonic() - self._pruned >= PRUNE_EVERY_S:
            self._prune(born)
            self._pruned = time.monotonic()

    def _stage(self, lost: list[Kept], born: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        for receiver in self.receivers:
            batch = {
                json.dumps({"id": k.pos, "event": k.body.decode()}): score(k.pos)
                for k in lost
                if receiver not in k.delivered
            }
            if batch:
                pipe.zadd(keys.webhook_recovered(receiver), batch)
        pipe.execute()
        with self._lock:
            for k in lost:
                k.staged_in = born
        log.warning("event log lost (Redis restarted empty): %d kept events re-staged", len(lost))

    def _prune(self, born: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.WEBHOOK_CURSORS)
        for receiver in self.receivers:
            pipe.zcard(keys.webhook_recovered(receiver))
        raw_cursors, *staged = pipe.execute()
        cursors: dict[str, int] = {}
        for name, value in raw_cursors.items():
            pos = _s(value).rpartition("|")[0]
            try:
                cursors[_s(name)] = score(pos)
            except ValueError:
                continue
        with self._lock:
            for k in self._kept:
                for receiver, waiting in zip(self.receivers, staged, strict=True):
                    if receiver in k.delivered:
                        continue
                    if k.born == born:
                        if score(k.pos) <= cursors.get(receiver, -1):
                            k.delivered.add(receiver)
                    elif k.staged_in == born and not waiting:
                        k.delivered.add(receiver)
            everyone = set(self.receivers)
            self._kept = deque(k for k in self._kept if not everyone <= k.delivered)
            metrics.EVENTS_KEPT.set(len(self._kept))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
