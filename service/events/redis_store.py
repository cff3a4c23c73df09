"""Cluster mode defect store: records in Redis, every write fenced by the unit's epoch.

A write from a member that no longer owns the unit (a stale epoch, e.g. after a pause)
is rejected by the Lua script and counted. A write that cannot reach Redis is queued in
order (bounded) and replayed when Redis returns, so an outage loses nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import replace
from typing import Any

import redis

from service.coordination import keys
from service.coordination.scripts import WRITE_DEFECT
from service.events.kept import RECOVERY_WINDOW_MS, EventKeeper
from service.events.model import DefectRecord
from service.observability import metrics

log = logging.getLogger(__name__)

OUTBOX_MAX = 10_000
EVIDENCE_TTL_S = 24 * 3600
# Events kept in the log for webhook receivers that are behind (approximate trim): the
# newest ~50,000 (~30 MB; at one open+close a minute on 100 streams, about 4 hours). A
# receiver down for longer loses the oldest; the bundled Redis caps memory at 200 MB.
EVENT_LOG_MAX = 50_000


class RedisDefectStore:
    def __init__(
        self,
        client: redis.Redis,
        pod_name: str,
        max_defects: int,
        keeper: EventKeeper | None = None,
    ) -> None:
        self.r = client
        self.keeper = keeper if keeper is not None else EventKeeper(client, [])
        self.pod = pod_name
        self.max_defects = max_defects
        self._write = client.register_script(WRITE_DEFECT)
        self._outbox: deque[tuple[DefectRecord, str, bytes | None]] = deque(maxlen=OUTBOX_MAX)
        self._lock = threading.Lock()
        self.rejected = 0

    # ------------------------------------------------------------------ writes
    def put(self, record: DefectRecord, evidence: bytes | None = None, kind: str = "open") -> bool:
        """Fenced write; False if rejected (stale epoch) or queued (Redis unreachable).

        Queued writes keep a snapshot of the record as it was (a later close mutates the
        live one), so the open commits as an open."""
        with self._lock:
            if self._outbox:  # keep order: queue behind what is already waiting
                self._queue(record, kind, evidence)
                return False
        try:
            result = self._send(record, kind, evidence)
        except (redis.ConnectionError, redis.TimeoutError):
            result = None
        if result is None:  # unreachable, or no lease yet after an empty restart
            with self._lock:
                self._queue(record, kind, evidence)
            return False
        return result

    def _queue(self, record: DefectRecord, kind: str, evidence: bytes | None) -> None:
        if len(self._outbox) == self._outbox.maxlen:
            metrics.OUTBOX_DROPPED.inc()  # the oldest goes: counted, never silent
            log.warning("outbox full (%d): oldest queued defect write dropped", OUTBOX_MAX)
        self._outbox.append((replace(record, details=dict(record.details)), kind, evidence))

    def rebase(self, stream_id: str, group: str, old_epoch: int, new_epoch: int) -> None:
        """Queued writes of a unit this member kept through a Redis restart (empty)
        carry its old epoch: move them to the new one, or the fence would refuse them."""
        with self._lock:
            for record, _, _ in self._outbox:
                if (record.stream_id, record.group, record.epoch) == (stream_id, group, old_epoch):
                    record.epoch = new_epoch

    def restore(self, record: DefectRecord, epoch: int) -> None:
        """Redis came back empty while ``record`` was open here: write it again (under
        the unit's new epoch) without a second event, so a next owner can resume it."""
        copy = replace(record, details=dict(record.details), epoch=epoch)
        try:
            self._send(copy, "open", None, restore=True)
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("open defect %s not restored (Redis unreachable)", record.id)

    def _send(
        self, record: DefectRecord, kind: str, evidence: bytes | None, restore: bool = False
    ) -> bool | None:
        """True committed, False refused by the fence, None: the unit has no lease at all
        (Redis restarted empty, its owner not yet back): queue it, the owner's claim
        comes within a tick and rebases it."""
        if evidence is not None:
            record.evidence = True
        doc = record.stored_json()
        event = json.dumps({"kind": kind, "defect": record.as_json()})
        ok = self._write(
            keys=[
                keys.LEASES,
                keys.DEFECTS,
                keys.DEFECTS_BY_TIME,
                keys.stream_defects(record.stream_id),
                keys.OPEN,
                keys.EVENT_LOG,
                keys.EVENT_SEQ,
                keys.LOG_BORN,
                keys.LOG_RECOVERING,
            ],
            args=[
                self.pod,
                keys.unit_field(record.stream_id, record.group),
                record.epoch if record.epoch is not None else -1,
                record.id,
                json.dumps(doc),
                record.started_at,
                "1" if record.open else "0",
                keys.EVENTS,
                event,
                self.max_defects,
                EVENT_LOG_MAX,
                "1" if restore else "0",
                self.keeper.born,
                RECOVERY_WINDOW_MS,
            ],
        )
        if ok == -1:
            return None
        if ok == 2:
            metrics.DUPLICATE_EVENTS_DROPPED.inc()
            log.info(
                "defect %s of %s: %s committed before, no second event",
                record.id,
                record.stream_id,
                kind,
            )
            return True
        if not ok:
            self.rejected += 1
            metrics.STALE_WRITES_REJECTED.inc()
            log.warning("write of defect %s rejected: epoch %s is stale", record.id, record.epoch)
            return False
        if isinstance(ok, list):  # an event appended: keep it until every receiver has it
            pos, born = (v.decode() if isinstance(v, bytes) else str(v) for v in ok)
            self.keeper.committed(pos, born, event.encode())
        if evidence is not None:
            self.r.set(keys.evidence(record.id), evidence, ex=EVIDENCE_TTL_S)
        if kind == "open" and not restore:
            metrics.DEFECTS_RAISED.labels(type=record.type).inc()  # counted at commit
        return True

    def flush(self) -> int:
        """Replay queued writes in order; stop at the first connection failure. Called
        after the coordinator's renewals: a write still without a lease then belongs to
        a unit this member no longer runs, and is refused like a stale one."""
        sent = 0
        while True:
            with self._lock:
                if not self._outbox:
                    return sent
                record, kind, evidence = self._outbox[0]
            try:
                if self._send(record, kind, evidence) is None:
                    self.rejected += 1
                    metrics.STALE_WRITES_REJECTED.inc()
                    log.warning("queued write of defect %s refused: unit not held", record.id)
            except (redis.ConnectionError, redis.TimeoutError):
                return sent
            with self._lock:
                self._outbox.popleft()
            sent += 1

    @property
    def pending(self) -> int:
        return len(self._outbox)

    # ------------------------------------------------------------------ reads
    def get(self, defect_id: str) -> DefectRecord | None:
        raw = self.r.hget(keys.DEFECTS, defect_id)
        return DefectRecord.from_json(json.loads(raw)) if raw else None

    def evidence(self, defect_id: str) -> bytes | None:
        data: Any = self.r.get(keys.evidence(defect_id))
        return bytes(data) if data else None

    def query(
        self,
        stream_id: str | None = None,
        open_: bool | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[DefectRecord]:
        index = keys.stream_defects(stream_id) if stream_id else keys.DEFECTS_BY_TIME
        ids: list[Any]
        if open_:
            ids = list(self.r.smembers(keys.OPEN))
        else:
            ids = list(self.r.zrevrange(index, 0, max(limit * 4, 4000)))
        if not ids:
            return []
        out: list[DefectRecord] = []
        for raw in self.r.hmget(keys.DEFECTS, ids):
            if raw is None:
                continue
            rec = DefectRecord.from_json(json.loads(raw))
            if stream_id is not None and rec.stream_id != stream_id:
                continue
            if open_ is not None and rec.open != open_:
                continue
            if since is not None and max(rec.started_at, rec.ended_at or 0.0) < since:
                continue
            out.append(rec)
        out.sort(key=lambda r: r.started_at, reverse=True)
        return out[:limit]

    def forget_stream(self, stream_id: str) -> None:
        """Cluster mode: the unit's owner purges (fenced) when it stops the stream."""
