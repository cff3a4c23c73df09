"""Cluster mode glue: run the units the coordinator assigns, publish their status.

The coordinator decides *which* units this process runs; the host turns that into
stream runners (one decode per stream, with only the owned groups' detectors) and
writes each local stream's status and thumbnail to Redis for the other members' API.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from service.coordination import keys
from service.coordination.assignment import Unit
from service.coordination.cluster import UnitHost
from service.detectors.registry import DETECTORS
from service.events.model import DefectRecord
from service.events.redis_store import RedisDefectStore
from service.pipeline.runner import StreamSpec
from service.pipeline.supervisor import Supervisor

log = logging.getLogger(__name__)

STATUS_EVERY_S = 0.4  # "last_frame_at kept fresh within 0.5 s" on every member
MEMBER_STATUS_TTL_S = 10  # a dead member's statuses go; readers also check freshness
THUMB_TTL_S = 10


def spec_from_registry(stream_id: str, doc: dict[str, Any], groups: list[str]) -> StreamSpec:
    detectors = [d for d in doc["detectors"] if DETECTORS[d].group in groups]
    return StreamSpec(
        id=stream_id,
        name=doc["name"],
        url=doc["url"],
        detectors=detectors,
        thresholds={k: v for k, v in doc.get("thresholds", {}).items() if k in detectors},
        labels=doc.get("labels", {}),
        pace=doc.get("pace", "live"),
        loop=doc.get("loop", False),
        signal_group=(doc.get("groups") or [None])[0],
    )


class ClusterHost(UnitHost):
    def __init__(
        self,
        supervisor: Supervisor,
        client: redis.Redis,
        store: RedisDefectStore,
        deletion_cost: Any = None,
    ) -> None:
        self.supervisor = supervisor
        self.r = client
        self.store = store  # the supervisor's store: outbox and restores
        self.deletion_cost = deletion_cost  # service.k8s.DeletionCost inside Kubernetes
        self.epochs: dict[str, dict[str, int]] = {}
        self._last_status = 0.0
        self._thumbs: dict[str, int] = {}

    def set_units(self, stream_id: str, spec: dict[str, Any], epochs: dict[str, int]) -> None:
        groups = sorted(epochs)
        entry = self.supervisor.get(stream_id)
        if not groups or not spec:
            if entry is not None:
                # Deleted (no spec): its open defects close under the epochs still held
                # (the leases go after this); handed over: the successor's to continue.
                self.supervisor.remove(stream_id, forget=False, deleted=not spec)
            self.epochs.pop(stream_id, None)
            return
        self.epochs[stream_id] = dict(epochs)
        if entry is not None and sorted(entry.spec.groups) == groups:
            return  # same units, maybe new epochs: the supervisor asks epoch_of() live
        self.supervisor.run(
            spec_from_registry(stream_id, spec, groups),
            self._open(stream_id),
            self._handed(stream_id, groups),
        )

    def _handed(self, stream_id: str, groups: list[str]) -> list[tuple[str, str, float]]:
        """The runs the units' previous owners saw begin and had not raised."""
        try:
            raw = self.r.mget([keys.handed(stream_id, g) for g in groups])
        except redis.RedisError:
            return []
        out: list[tuple[str, str, float]] = []
        for doc in raw:
            try:
                out += [(str(n), str(k), float(t)) for n, k, t in json.loads(doc or "[]")]
            except (TypeError, ValueError):
                log.warning("malformed handed runs of %s skipped", stream_id)
        return [r for r in out if r[0] in DETECTORS]

    def warm(self, stream_id: str, spec: dict[str, Any], groups: list[str]) -> float | None:
        try:
            return self.supervisor.warm(spec_from_registry(stream_id, spec, groups))
        except Exception:  # a bad entry must not stop the coordinator: no warm-up then
            log.exception("could not warm up %s", stream_id)
            return 0.0

    def analysed_to(self, unit: Unit, wall: float) -> bool:
        return self.supervisor.analysed_to(unit.stream_id, wall)

    def cool(self, keep: set[str]) -> None:
        self.supervisor.cool(keep)

    def handed_out(self, unit: Unit) -> list[Any]:
        return [list(r) for r in self.supervisor.handed_out(unit.stream_id, unit.group)]

    def _open(self, stream_id: str) -> list[DefectRecord]:
        """The stream's open defects as committed: a new owner continues or closes them."""
        try:
            return self.store.query(stream_id, open_=True)
        except redis.RedisError as exc:
            log.warning("open defects of %s not loaded (%s): none resumed", stream_id, exc)
            return []

    def epoch_of(self, stream_id: str, group: str) -> int | None:
        return self.epochs.get(stream_id, {}).get(group)

    def load(self) -> float:
        return float(sum(len(e) for e in self.epochs.values()))

    def reclaimed(self, unit: Unit, old_epoch: int, new_epoch: int) -> None:
        """Redis came back empty and this member claimed ``unit`` again: what it queued
        commits under the new epoch, and its open defects are written back (silently),
        or a next owner could not resume them and they would stay open for good."""
        self.store.rebase(unit.stream_id, unit.group, old_epoch, new_epoch)
        for record in self.supervisor.open_records(unit.stream_id, unit.group):
            self.store.restore(record, new_epoch)

    def commit_queued(self) -> None:
        self.store.flush()

    def publish(self) -> None:
        """After each sync with Redis: replay defect writes queued during an outage, keep
        (or re-stage) committed events until every receiver has them, and share the
        status (and thumbnail) of the streams this member runs."""
        self.store.flush()
        if self.store.keeper.active:
            self.store.keeper.sync()
        if self.deletion_cost is not None:
            self.deletion_cost.update(self.load())
        now = time.time()
        if now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        records: dict[Any, Any] = {}  # stream id -> JSON (redis-py types hset loosely)
        thumbs: dict[str, bytes] = {}
        for entry in self.supervisor.all():
            status = self.supervisor.status(entry)
            status["owner"] = self.supervisor.pod_name
            status["published_at"] = now
            records[entry.spec.id] = json.dumps(status)
            thumb = entry.runner.thumbnail
            if thumb is not None and self._thumbs.get(entry.spec.id) != id(thumb):
                self._thumbs[entry.spec.id] = id(thumb)
                thumbs[entry.spec.id] = thumb
        # Replaced whole (MULTI: readers never see it half written): streams this member
        # stopped running drop out; the key expires if the member dies.
        key = keys.member_status(self.supervisor.pod_name)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(key)
        if records:
            pipe.hset(key, mapping=records)
            pipe.expire(key, MEMBER_STATUS_TTL_S)
        for sid, thumb in thumbs.items():
            pipe.set(keys.thumbnail(sid), thumb, ex=THUMB_TTL_S)
        pipe.execute()
