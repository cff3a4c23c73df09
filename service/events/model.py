"""The DefectEvent record exposed by the API, the event feed and webhooks."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from service.pipeline.lifecycle import Defect


def utc_iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str | None) -> float | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class DefectRecord:
    stream_id: str
    stream_name: str
    type: str
    group: str
    start: float
    severity: str
    details: dict[str, Any]
    started_at: float  # wall clock (epoch seconds) of ``start``
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    end: float | None = None
    ended_at: float | None = None
    evidence: bool = False
    epoch: int | None = None
    key: str = ""  # which instance of the condition, e.g. the channel (stored, not shown)

    @property
    def open(self) -> bool:
        return self.end is None

    @classmethod
    def from_defect(
        cls, d: Defect, stream_id: str, stream_name: str, wall_of: float
    ) -> DefectRecord:
        """``wall_of`` is the wall-clock time of media time 0 for this stream."""
        return cls(
            stream_id=stream_id,
            stream_name=stream_name,
            type=d.type,
            group=d.group,
            start=d.start,
            severity=d.severity,
            details=dict(d.details),
            started_at=wall_of + d.start,
            key=d.key,
        )

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DefectRecord:
        """Inverse of ``as_json`` (records stored in Redis)."""
        return cls(
            id=doc["id"],
            stream_id=doc["stream_id"],
            stream_name=doc["stream_name"],
            type=doc["type"],
            group=doc["group"],
            start=doc["start"],
            end=doc["end"],
            severity=doc["severity"],
            details=doc["details"],
            started_at=_parse_iso(doc["started_at"]) or 0.0,
            ended_at=_parse_iso(doc["ended_at"]),
            evidence=doc["evidence_url"] is not None,
            epoch=doc["epoch"],
            key=str(doc.get("key", "")),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream_id": self.stream_id,
            "stream_name": self.stream_name,
            "type": self.type,
            "group": self.group,
            "state": "open" if self.open else "closed",
            "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3),
            "started_at": utc_iso(self.started_at),
            "ended_at": utc_iso(self.ended_at),
            "severity": self.severity,
            "details": self.details,
            "evidence_url": f"/api/v1/defects/{self.id}/evidence.jpg" if self.evidence else None,
            "epoch": self.epoch,
        }

    def stored_json(self) -> dict[str, Any]:
        """``as_json`` plus what a next owner needs to resume the defect."""
        return {**self.as_json(), "key": self.key}


@dataclass(frozen=True)
class FeedEvent:
    """One open or close, as it was when it happened: the record is copied, because the
    live record is closed in place later and an ``open`` delivered late (a slow webhook,
    a busy SSE reader) must still read ``open``."""

    kind: Literal["open", "close"]
    record: DefectRecord

    def __post_init__(self) -> None:
        snapshot = replace(self.record, details=copy.deepcopy(self.record.details))
        object.__setattr__(self, "record", snapshot)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "defect": self.record.as_json()}
