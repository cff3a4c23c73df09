"""The stream supervisor: one runner per registered stream, events to the bus and store.

This is the embedded (single-process) owner of every stream; cluster mode decides which
units a process runs and hands them to the same supervisor.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.events.bus import EventBus
from service.events.model import DefectRecord, FeedEvent, utc_iso
from service.events.store import DefectStore
from service.media.guard import AddressPolicy
from service.observability import metrics
from service.pipeline.lifecycle import Defect, DefectEvent
from service.pipeline.runner import StreamRunner, StreamSpec

log = logging.getLogger(__name__)


class DuplicateStreamError(ValueError):
    pass


def new_stream_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class StreamEntry:
    spec: StreamSpec
    runner: StreamRunner
    created: float


class Supervisor:
    def __init__(
        self,
        store: DefectStore,
        bus: EventBus,
        pod_name: str,
        no_signal_s: float = 5.0,
        timeout_s: float = 3.0,
        runner_factory: Callable[..., StreamRunner] = StreamRunner,
        policy: AddressPolicy | None = None,
    ) -> None:
        self.store = store
        self.policy = policy  # checked at every (re)connect of every source
        self.bus = bus
        self.pod_name = pod_name
        self.no_signal_s = no_signal_s
        self.timeout_s = timeout_s
        self._factory = runner_factory
        # Cluster mode: the fencing epoch of a unit this process owns (None embedded).
        self.epoch_of: Callable[[str, str], int | None] = lambda stream_id, group: None
        # Cluster mode: a runner analysed its first frame (the unit is running for real).
        self.on_first_frame: Callable[[StreamSpec], None] = lambda spec: None
        self._streams: dict[str, StreamEntry] = {}
        self._records: dict[tuple[str, int], DefectRecord] = {}  # (stream, id(defect))
        # Records whose media times are another runner's (inherited): ends are dated
        # through the wall clock instead.
        self._foreign: set[str] = set()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ registry
    def add(self, name: str, url: str, detectors: list[str], **options: Any) -> StreamEntry:
        """Embedded mode: register a stream and run it here."""
        with self._lock:
            if any(e.spec.name == name for e in self._streams.values()):
                raise DuplicateStreamError(name)
            spec = StreamSpec(
                id=new_stream_id(), name=name, url=url, detectors=detectors, **options
            )
            return self.run(spec)

    def run(self, spec: StreamSpec, inherited: list[DefectRecord] | None = None) -> StreamEntry:
        """Start monitoring ``spec`` in this process (replacing a runner for the same id).

        ``inherited``: the open defects of the stream's units as committed by their
        previous owners; with those the replaced runner still held open here, the new
        runner continues them (same ids) or closes them (DESIGN.md section 6)."""
        old = self._streams.get(spec.id)
        records = {r.id: r for r in inherited or []}
        if old is not None:
            old.runner.quiesce()  # nothing more from it: its open defects move on
            with self._lock:
                for key in [k for k in self._records if k[0] == spec.id]:
                    record = self._records.pop(key)
                    records[record.id] = record  # newer than Redis' copy (maybe queued)
        defects = []
        for record in records.values():
            if record.group not in spec.groups or not record.open:
                continue
            defect = Defect(
                type=record.type,
                group=record.group,
                key=record.key,
                start=0.0,  # on since before this runner's first input
                severity=record.severity,
                details=dict(record.details),
            )
            with self._lock:
                self._records[(spec.id, id(defect))] = record
                self._foreign.add(record.id)
            defects.append(defect)
        runner = self._factory(
            spec,
            self._on_event,
            no_signal_s=self.no_signal_s,
            timeout_s=self.timeout_s,
            on_frame_stats=self._on_stats,
            policy=self.policy,
            inherited=defects,
        )
        entry = StreamEntry(spec, runner, time.time())
        with self._lock:
            self._streams[spec.id] = entry
        runner.start()
        return entry

    def remove(self, stream_id: str, forget: bool = True) -> bool:
        with self._lock:
            entry = self._streams.pop(stream_id, None)
        if entry is None:
            return False
        entry.runner.quiesce()  # emits nothing more once this returns (then the release)
        with self._lock:  # its open defects are the next owner's (or deleted) now
            for key in [k for k in self._records if k[0] == stream_id]:
                self._foreign.discard(self._records.pop(key).id)
        if forget:
            self.store.forget_stream(stream_id)
        metrics.forget_stream(stream_id)
        return True

    def open_records(self, stream_id: str, group: str) -> list[DefectRecord]:
        """The defects of a unit open here now (raised or continued by this process)."""
        with self._lock:
            return [
                r
                for (sid, _), r in self._records.items()
                if sid == stream_id and r.group == group and r.open
            ]

    def get(self, stream_id: str) -> StreamEntry | None:
        with self._lock:
            return self._streams.get(stream_id)

    def all(self) -> list[StreamEntry]:
        with self._lock:
            return sorted(self._streams.values(), key=lambda e: e.created)

    def stop_all(self, wait: float = 2.0) -> None:
        for entry in self.all():
            entry.runner.stop()
        deadline = time.monotonic() + wait
        for entry in self.all():
            entry.runner.stop(wait=max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ views
    def status(self, entry: StreamEntry) -> dict[str, Any]:
        r = entry.runner
        return {
            "id": entry.spec.id,
            "name": entry.spec.name,
            "url": entry.spec.url,
            "detectors": entry.spec.detectors,
            "labels": entry.spec.labels,
            "pace": entry.spec.pace,
            "loop": entry.spec.loop,
            "state": r.state,
            "units": [
                {
                    "group": g,
                    "owner": self.pod_name,
                    "epoch": None,
                    "running": r.running,
                    "since": utc_iso(entry.created),
                }
                for g in entry.spec.groups
            ],
            "fps": round(r.fps, 2),
            "last_frame_at": utc_iso(r.last_frame_wall),
            "open_defects": len(r.open_defects),
            "frames": r.stats.frames,
            "dropped_frames": r.stats.dropped,
            "lag_seconds": round(r.stats.lag_s, 3),
            "last_error": r.last_error,
            "loudness": dict(r.readings) or None,
        }

    def update_state_metrics(self) -> None:
        counts: dict[str, int] = {
            s: 0 for s in ("pending", "running", "reconnecting", "down", "stopped")
        }
        for e in self.all():
            counts[e.runner.state] = counts.get(e.runner.state, 0) + 1
        for state, n in counts.items():
            metrics.STREAM_STATES.labels(state=state).set(n)
        metrics.UNITS_OWNED.set(sum(len(e.spec.groups) for e in self.all()))

    # ------------------------------------------------------------------ events
    def _on_event(self, runner: StreamRunner, ev: DefectEvent, evidence: bytes | None) -> None:
        spec = runner.spec
        key = (spec.id, id(ev.defect))
        if ev.kind == "open":
            record = DefectRecord.from_defect(ev.defect, spec.id, spec.name, runner.wall_of(0.0))
            record.epoch = self.epoch_of(spec.id, record.group)
            with self._lock:
                self._records[key] = record
            committed = self.store.put(record, evidence, kind="open")
        else:
            with self._lock:
                found = self._records.pop(key, None)
            if found is None:
                return
            record = found
            end = ev.defect.end if ev.defect.end is not None else ev.defect.start
            record.ended_at = runner.wall_of(end)
            if record.id in self._foreign:
                # Its start is on the previous owner's media timeline: extend it by the
                # wall time between the two.
                self._foreign.discard(record.id)
                record.end = record.start + max(0.0, record.ended_at - record.started_at)
            else:
                record.end = end
            record.details = dict(ev.defect.details) or record.details
            record.epoch = self.epoch_of(spec.id, record.group)
            committed = self.store.put(record, kind="close")
        if committed:  # the live feed shows commits only (cluster: from Redis pub/sub)
            self.bus.publish(FeedEvent(ev.kind, record))

    def _on_stats(self, runner: StreamRunner, kind: str, value: float) -> None:
        if kind == "first_frame":
            self.on_first_frame(runner.spec)
        else:
            _record_stats(runner, kind, value)


def _record_stats(runner: StreamRunner, kind: str, value: float) -> None:
    sid = runner.spec.id
    if kind == "frame":
        metrics.for_stream(metrics.FRAMES_DECODED, sid).inc(value)
    elif kind == "lag":
        metrics.for_stream(metrics.ANALYSIS_LAG, sid).set(value)
    elif kind == "dropped":
        metrics.FRAMES_DROPPED.labels(stream_id=sid).inc(value)
    elif kind == "udp_drops":
        metrics.UDP_KERNEL_DROPS.labels(stream_id=sid).inc(value)
    elif kind == "decode_error":
        metrics.DECODE_ERRORS.labels(stream_id=sid).inc(value)
    elif kind == "reconnect":
        metrics.RECONNECTS.labels(stream_id=sid).inc(value)
    elif kind.startswith("reading:"):
        metrics.set_reading(sid, kind.removeprefix("reading:"), value)
