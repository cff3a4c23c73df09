"""The defect store contract: one interface, two adapters (DESIGN.md, "how we write code").

- ``service.events.sqlite_store.SqliteStore``: embedded mode (one process, or its worker
  processes), in SQLite -- a file under ``AVMON_DATA_DIR`` (a restart forgets nothing),
  or memory when unset.
- ``service.events.redis_store.RedisDefectStore``: cluster mode, every write fenced by
  the unit's epoch.

Both append each committed open/close to their event log (``service.events.event_log``)
in the same commit; the API, SSE and webhooks read only what was committed.
"""

from __future__ import annotations

from typing import Protocol

from service.events.model import DefectRecord


class DefectStore(Protocol):
    def put(self, record: DefectRecord, evidence: bytes | None = None, kind: str = "open") -> bool:
        """Commit an open or close (and its log entry); False if it did not commit now
        (refused by the fence, or queued until the store is reachable)."""
        ...

    def get(self, defect_id: str) -> DefectRecord | None: ...

    def evidence(self, defect_id: str) -> bytes | None: ...

    def query(
        self,
        stream_id: str | None = None,
        open_: bool | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[DefectRecord]:
        """Newest first. ``since`` is wall-clock epoch seconds (started or ended after)."""
        ...

    def forget_stream(self, stream_id: str) -> None: ...
