"""Where the API finds streams: this process (embedded) or the shared Redis registry
(cluster mode, where any member answers any request)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import redis

from service.coordination import keys
from service.events.model import utc_iso
from service.pipeline.runner import StreamSpec
from service.pipeline.supervisor import DuplicateStreamError, Supervisor, new_stream_id

if TYPE_CHECKING:
    from service.coordination.cluster import Coordinator
    from service.events.sqlite_store import SqliteStore

log = logging.getLogger(__name__)

STALE_STATUS_S = 2.0


class EmbeddedStreams:
    def __init__(self, supervisor: Supervisor, pod: str, registry: SqliteStore) -> None:
        self.supervisor = supervisor
        self.pod = pod
        self.registry = registry  # streams saved here run again after a restart

    def create(self, name: str, url: str, detectors: list[str], **options: Any) -> dict[str, Any]:
        entry = self.supervisor.add(name, url, detectors, **options)
        self.registry.save_stream(entry.spec.id, asdict(entry.spec))
        return self.supervisor.status(entry)

    def list(self) -> list[dict[str, Any]]:
        return [self.supervisor.status(e) for e in self.supervisor.all()]

    def get(self, stream_id: str) -> dict[str, Any] | None:
        entry = self.supervisor.get(stream_id)
        return None if entry is None else self.supervisor.status(entry)

    def delete(self, stream_id: str) -> bool:
        self.registry.delete_stream(stream_id)
        return self.supervisor.remove(stream_id)

    def thumbnail(self, stream_id: str) -> bytes | None:
        entry = self.supervisor.get(stream_id)
        return None if entry is None else entry.runner.thumbnail

    def cluster(self) -> dict[str, Any]:
        units = [
            {
                "stream_id": e.spec.id,
                "group": g,
                "owner": self.pod,
                "epoch": None,
                "running": e.runner.running,
            }
            for e in self.supervisor.all()
            for g in e.spec.groups
        ]
        member = {"id": self.pod, "ready": True, "units": len(units), "load": float(len(units))}
        return {"members": [member], "units": units, "generation": None}


class ClusterStreams:
    def __init__(
        self, client: redis.Redis, supervisor: Supervisor, coordinator: Coordinator
    ) -> None:
        self.r = client
        self.supervisor = supervisor
        self.coordinator = coordinator

    def create(self, name: str, url: str, detectors: list[str], **options: Any) -> dict[str, Any]:
        stream_id = new_stream_id()
        if not self.r.hsetnx(keys.NAMES, name, stream_id):
            raise DuplicateStreamError(name)
        spec = StreamSpec(id=stream_id, name=name, url=url, detectors=detectors, **options)
        doc = {
            "name": name,
            "url": url,
            "detectors": detectors,
            "groups": spec.groups,
            "thresholds": spec.thresholds,
            "labels": spec.labels,
            "pace": spec.pace,
            "loop": spec.loop,
            "created": time.time(),
        }
        pipe = self.r.pipeline()
        pipe.hset(keys.STREAMS, stream_id, json.dumps(doc))
        pipe.incr(keys.REGISTRY_VERSION)
        pipe.execute()
        self.coordinator.wake()  # assign at once
        return self._status(stream_id, doc, {}, {})

    def _leases(self) -> dict[tuple[str, str], tuple[str, int]]:
        out = {}
        for field, value in self.r.hgetall(keys.LEASES).items():
            sid, _, group = _s(field).partition("|")
            try:
                owner, epoch, _exp = _s(value).rsplit("|", 2)
                out[(sid, group)] = (owner, int(epoch))
            except ValueError:
                continue  # malformed: shown as unowned, never a 500
        return out

    def _published(
        self, leases: dict[tuple[str, str], tuple[str, int]], stream_ids: list[str] | None = None
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """stream id -> owner -> the fresh status that owner published for it."""
        owners = sorted({owner for (sid, _), (owner, _) in leases.items()
                         if stream_ids is None or sid in stream_ids})  # fmt: skip
        pipe = self.r.pipeline(transaction=False)
        for owner in owners:
            if stream_ids is None:
                pipe.hgetall(keys.member_status(owner))
            else:
                pipe.hmget(keys.member_status(owner), stream_ids)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        now = time.time()
        for owner, got in zip(owners, pipe.execute(), strict=True):
            asked = stream_ids or []
            pairs = got.items() if isinstance(got, dict) else zip(asked, got, strict=True)
            for sid, raw in pairs:
                record = _load(raw) if raw else None
                if record is not None and now - record.get("published_at", 0) < STALE_STATUS_S:
                    out.setdefault(_s(sid), {})[owner] = record
        return out

    def _status(
        self,
        stream_id: str,
        doc: dict[str, Any],
        published: dict[str, dict[str, Any]],
        leases: dict[tuple[str, str], tuple[str, int]],
    ) -> dict[str, Any]:
        """One stream's status from the records its unit owners published (fresh ones)."""
        units = []
        primary: dict[str, Any] | None = None  # the first group's owner speaks for the stream
        for g in doc["groups"]:
            owner, epoch = leases.get((stream_id, g), (None, None))
            record = published.get(owner) if owner is not None else None
            if primary is None and record is not None:
                primary = record
            units.append(
                {
                    "group": g,
                    "owner": owner,
                    "epoch": epoch,
                    "running": bool(record and record.get("state") == "running"),
                    "since": utc_iso(doc.get("created")),
                }
            )
        base = {
            "id": stream_id,
            "name": doc["name"],
            "url": doc["url"],
            "detectors": doc["detectors"],
            "labels": doc.get("labels", {}),
            "pace": doc.get("pace", "live"),
            "loop": doc.get("loop", False),
            "state": "pending",
            "fps": 0.0,
            "last_frame_at": None,
            "open_defects": 0,
            "frames": 0,
            "dropped_frames": 0,
            "lag_seconds": 0.0,
            "last_error": None,
        }
        if primary is not None:
            for k in (
                "state",
                "fps",
                "last_frame_at",
                "open_defects",
                "frames",
                "dropped_frames",
                "lag_seconds",
                "last_error",
                "loudness",
            ):
                base[k] = primary.get(k)
            # Each owner counts the defects of its own units.
            base["open_defects"] = sum(int(r.get("open_defects") or 0) for r in published.values())
        base["units"] = units
        return base

    def list(self) -> list[dict[str, Any]]:
        streams = self.r.hgetall(keys.STREAMS)
        leases = self._leases()
        published = self._published(leases)
        out = []
        for sid_raw, raw in streams.items():
            sid = _s(sid_raw)
            if (doc := _load(raw)) is None:
                continue
            out.append(self._status(sid, doc, published.get(sid, {}), leases))
        return sorted(out, key=lambda s: s["name"])

    def get(self, stream_id: str) -> dict[str, Any] | None:
        try:
            raw = self.r.hget(keys.STREAMS, stream_id)
            if raw is None or (doc := _load(raw)) is None:
                return None
            leases = self._leases()
            published = self._published(leases, [stream_id]).get(stream_id, {})
            return self._status(stream_id, doc, published, leases)
        except (redis.ConnectionError, redis.TimeoutError):
            # Redis is down: answer from memory for the streams this member runs.
            entry = self.supervisor.get(stream_id)
            if entry is None:
                raise
            return self.supervisor.status(entry)

    def delete(self, stream_id: str) -> bool:
        raw = self.r.hget(keys.STREAMS, stream_id)
        if raw is None:
            return False
        name = (_load(raw) or {}).get("name", "")
        pipe = self.r.pipeline()
        pipe.hdel(keys.STREAMS, stream_id)
        pipe.hdel(keys.NAMES, name)
        pipe.incr(keys.REGISTRY_VERSION)
        pipe.execute()
        self.r.publish(keys.HANDOFF, "registry")  # the owner stops it at once
        return True

    def thumbnail(self, stream_id: str) -> bytes | None:
        entry = self.supervisor.get(stream_id)
        if entry is not None and entry.runner.thumbnail is not None:
            return entry.runner.thumbnail
        data: Any = self.r.get(keys.thumbnail(stream_id))
        return bytes(data) if data else None

    def cluster(self) -> dict[str, Any]:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.MEMBER_INFO)
        pipe.zrangebyscore(keys.MEMBERS, "-inf", "+inf", withscores=True)
        pipe.hgetall(keys.STREAMS)
        pipe.get(keys.EPOCH)
        infos, members, streams, generation = pipe.execute()
        leases = self._leases()
        published = self._published(leases)
        out_members = []
        for member, _score in members:
            name = _s(member)
            info = _load(infos.get(member) or infos.get(name) or "{}") or {}
            out_members.append(
                {
                    "id": name,
                    "ready": bool(info.get("ready")),
                    "units": int(info.get("units", 0)),
                    "load": float(info.get("load", 0.0)),
                }
            )
        units = []
        for sid_raw, raw in streams.items():
            sid = _s(sid_raw)
            if (doc := _load(raw)) is None:
                continue
            status = self._status(sid, doc, published.get(sid, {}), leases)
            for u in status["units"]:
                units.append(
                    {
                        "stream_id": sid,
                        "group": u["group"],
                        "owner": u["owner"],
                        "epoch": u["epoch"],
                        "running": u["running"],
                    }
                )
        return {
            "members": sorted(out_members, key=lambda m: m["id"]),
            "units": units,
            "generation": int(generation) if generation else None,
        }


def _load(raw: Any) -> dict[str, Any] | None:
    """A JSON object from Redis, or None if it is not one (logged, then skipped: a bad
    entry written by anyone must not turn every listing into a 500)."""
    try:
        doc = json.loads(raw)
    except (ValueError, TypeError):
        doc = None
    if not isinstance(doc, dict):
        log.warning("malformed entry in Redis skipped: %r", _s(raw)[:80])
        return None
    return doc


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
