"""Bounded in-memory defect store (embedded mode) with evidence frames."""

from __future__ import annotations

import threading
from collections import OrderedDict

from service.events.model import DefectRecord
from service.observability import metrics

MAX_EVIDENCE = 500  # JPEGs kept (a few tens of KB each)


class DefectStore:
    """Keeps the newest ``max_defects`` defects; the oldest closed ones go first."""

    def __init__(self, max_defects: int) -> None:
        self.max_defects = max_defects
        self._records: OrderedDict[str, DefectRecord] = OrderedDict()
        self._evidence: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def put(self, record: DefectRecord, evidence: bytes | None = None, kind: str = "open") -> bool:
        if kind == "open":
            metrics.DEFECTS_RAISED.labels(type=record.type).inc()  # counted at commit
        with self._lock:
            self._records[record.id] = record
            self._records.move_to_end(record.id)
            if evidence is not None:
                record.evidence = True
                self._evidence[record.id] = evidence
                while len(self._evidence) > MAX_EVIDENCE:
                    old, _ = self._evidence.popitem(last=False)
                    if old in self._records:
                        self._records[old].evidence = False
            while len(self._records) > self.max_defects:
                victim = next((k for k, r in self._records.items() if not r.open), None)
                victim = victim or next(iter(self._records))
                del self._records[victim]
                self._evidence.pop(victim, None)
                self.evicted += 1
        return True

    def get(self, defect_id: str) -> DefectRecord | None:
        with self._lock:
            return self._records.get(defect_id)

    def evidence(self, defect_id: str) -> bytes | None:
        with self._lock:
            return self._evidence.get(defect_id)

    def query(
        self,
        stream_id: str | None = None,
        open_: bool | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[DefectRecord]:
        """Newest first. ``since`` is wall-clock epoch seconds (started or ended after)."""
        with self._lock:
            records = list(self._records.values())
        out: list[DefectRecord] = []
        for r in reversed(records):
            if stream_id is not None and r.stream_id != stream_id:
                continue
            if open_ is not None and r.open != open_:
                continue
            if since is not None and max(r.started_at, r.ended_at or 0.0) < since:
                continue
            out.append(r)
            if len(out) >= limit:
                break
        return out

    def forget_stream(self, stream_id: str) -> None:
        with self._lock:
            for key in [k for k, r in self._records.items() if r.stream_id == stream_id]:
                del self._records[key]
                self._evidence.pop(key, None)
