"""The committed event log: what webhooks (and the live feed) are derived from.

Every defect open and close is appended by the same commit that writes the record
(cluster: the fenced Lua script; embedded: one SQLite transaction), so nothing reaches a
user that was not committed. Entries carry a sequence number: a receiver's cursor that
falls behind the oldest retained entry shows the gap (events lost past retention).

Webhook delivery (``service.events.delivery``) needs only this contract; Redis and SQLite
adapters implement it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from service.coordination import keys
from service.coordination.scripts import SETTLE_RECOVERED
from service.events.kept import score


@dataclass(frozen=True)
class LoggedEvent:
    id: str  # stable: the webhook-id receivers deduplicate on
    seq: int  # 1, 2, 3... in commit order
    committed_at: float  # wall clock, epoch seconds
    body: bytes
    recovered: bool = False  # re-staged after the log was lost (``service.events.kept``)


@dataclass(frozen=True)
class Cursor:
    """A receiver's progress: the last entry delivered (or given up on)."""

    id: str
    seq: int


class EventLog(Protocol):
    def after(self, cursor: Cursor | None, count: int, block_s: float) -> list[LoggedEvent]:
        """Up to ``count`` entries after ``cursor`` (from the oldest retained if None),
        waiting up to ``block_s`` for one if there are none yet."""
        ...

    def last_seq(self) -> int: ...

    def hold(self, receiver: str, who: str, ttl_s: float) -> bool:
        """Take or renew the right to deliver to ``receiver`` (one deliverer at a time,
        so a receiver sees events in commit order)."""
        ...

    def release(self, receiver: str, who: str) -> None:
        """Give up ``receiver`` if ``who`` holds it (stopping): another process takes it
        at once rather than when the hold runs out."""
        ...

    def cursor(self, receiver: str) -> Cursor | None: ...

    def advance(self, receiver: str, who: str, to: Cursor) -> bool:
        """Move the cursor, only while ``who`` holds the receiver."""
        ...

    def recovered(self, receiver: str, count: int) -> list[LoggedEvent] | None:
        """Events re-staged for ``receiver`` after the log was lost, oldest first, to be
        delivered before the log; None while members are still re-staging (deliver
        nothing yet)."""
        ...

    def settle(self, receiver: str, who: str, entry: LoggedEvent) -> bool:
        """A recovered event delivered (or given up): drop it, only while ``who`` holds
        the receiver."""
        ...


HOLD = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

RELEASE_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

ADVANCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


class RedisEventLog:
    """The log is a Redis Stream (``keys.EVENT_LOG``) appended by ``WRITE_DEFECT``."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._hold = client.register_script(HOLD)
        self._release_hold = client.register_script(RELEASE_HOLD)
        self._advance = client.register_script(ADVANCE)
        self._settle = client.register_script(SETTLE_RECOVERED)

    def after(self, cursor: Cursor | None, count: int, block_s: float) -> list[LoggedEvent]:
        r: Any = self.r  # redis-py's stream replies are loosely typed
        start = cursor.id if cursor is not None else "0-0"
        block = int(block_s * 1000) or None
        reply = r.xread({keys.EVENT_LOG: start}, count=count, block=block)
        out = []
        for entry_id, raw in reply[0][1] if reply else []:
            eid = _s(entry_id)
            fields = raw or {}  # an entry deleted meanwhile reads as no fields
            seq = _s(fields.get(b"seq", b"0"))
            ms = int(eid.split("-", 1)[0])
            body = bytes(fields.get(b"event", b""))
            out.append(LoggedEvent(eid, int(seq) if seq.isdigit() else 0, ms / 1000, body))
        return out

    def last_seq(self) -> int:
        raw: Any = self.r.get(keys.EVENT_SEQ)
        return int(raw or 0)

    def hold(self, receiver: str, who: str, ttl_s: float) -> bool:
        return bool(self._hold(keys=[keys.webhook_holder(receiver)], args=[who, int(ttl_s * 1000)]))

    def release(self, receiver: str, who: str) -> None:
        self._release_hold(keys=[keys.webhook_holder(receiver)], args=[who])

    def cursor(self, receiver: str) -> Cursor | None:
        raw = self.r.hget(keys.WEBHOOK_CURSORS, receiver)
        if not raw:
            return None
        eid, _, seq = _s(raw).rpartition("|")
        return Cursor(eid, int(seq)) if eid and seq.isdigit() else None

    def advance(self, receiver: str, who: str, to: Cursor) -> bool:
        return bool(
            self._advance(
                keys=[keys.webhook_holder(receiver), keys.WEBHOOK_CURSORS],
                args=[who, receiver, f"{to.id}|{to.seq}"],
            )
        )

    def recovered(self, receiver: str, count: int) -> list[LoggedEvent] | None:
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(keys.LOG_RECOVERING)
        pipe.zrange(keys.webhook_recovered(receiver), 0, count - 1, withscores=True)
        recovering, staged = pipe.execute()
        if recovering:
            return None
        out = []
        for raw, at in staged:
            # Its score is its original position: its webhook-id, and its date.
            pos = f"{int(at) // 1000}-{int(at) % 1000}"
            try:
                body = str(json.loads(raw)["event"]).encode()
            except (ValueError, KeyError, TypeError):
                body = b""  # unreadable: given up (counted as expired)
            out.append(LoggedEvent(pos, 0, int(at) // 1000 / 1000, body, recovered=True))
        return out

    def settle(self, receiver: str, who: str, entry: LoggedEvent) -> bool:
        return bool(
            self._settle(
                keys=[keys.webhook_holder(receiver), keys.webhook_recovered(receiver)],
                args=[who, score(entry.id)],
            )
        )


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
