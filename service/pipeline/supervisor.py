"""The stream supervisor: one runner per registered stream, events to the bus and store.

This is the embedded (single-process) owner of every stream; cluster mode decides which
units a process runs and hands them to the same supervisor.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from service.detectors import registry
from service.events.bus import EventBus
from service.events.model import DefectRecord, FeedEvent, utc_iso
from service.events.store import DefectStore
from service.media.guard import AddressPolicy
from service.observability import metrics
from service.pipeline.lifecycle import Defect, DefectEvent
from service.pipeline.runner import StreamRunner, StreamSpec

log = logging.getLogger(__name__)

WARM_SLACK_S = 1.0  # a warming runner gets the source timeout plus this to show media


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
        # Make-before-break: runners warming up before a handoff (cluster mode: asked by
        # the units' owner), and runners about to replace a stream's runner.
        self._warming: dict[str, StreamEntry] = {}
        self._swapping: dict[str, StreamEntry] = {}
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

    def run(
        self,
        spec: StreamSpec,
        inherited: list[DefectRecord] | None = None,
        handed: list[tuple[str, str, float]] | None = None,
    ) -> StreamEntry:
        """Start monitoring ``spec`` in this process (replacing a runner for the same id).

        ``inherited``: the open defects of the stream's units as committed by their
        previous owners; with those the replaced runner still held open here, the new
        runner continues them (same ids) or closes them (DESIGN.md section 6).
        ``handed``: runs their previous owners saw begin and had not raised yet.

        Make-before-break: a runner warmed up for exactly ``spec`` (``warm``) takes over
        at once; a runner already here for other groups keeps analysing its remaining
        ones until its replacement has media, so no input goes unwatched."""
        handed = list(handed or [])
        with self._lock:
            old = self._streams.get(spec.id)
            warmed = self._warming.pop(spec.id, None)
            swapping = self._swapping.pop(spec.id, None)
        if swapping is not None:
            swapping.runner.stop()  # superseded before it took over
        if warmed is not None and warmed.spec != spec:
            warmed.runner.stop()
            warmed = None
        if warmed is not None:
            return self._swap(spec, warmed.runner, inherited or [], handed)
        if old is None or not old.runner.running:
            return self._start(spec, old, inherited or [], handed)
        # Groups changed under a running runner: it keeps the groups still ours (and
        # emits nothing for the others from now on) while the new one warms up.
        with self._lock:
            for key in [k for k in self._records if k[0] == spec.id]:
                if self._records[key].group not in spec.groups:
                    self._foreign.discard(self._records.pop(key).id)
            old.spec = spec
        runner = self._new_runner(spec, [], [])
        return self._swap(spec, runner, inherited or [], handed, started=False)

    def _new_runner(
        self, spec: StreamSpec, inherited: list[Defect], handed: list[tuple[str, str, float]]
    ) -> StreamRunner:
        return self._factory(
            spec,
            self._on_event,
            no_signal_s=self.no_signal_s,
            timeout_s=self.timeout_s,
            on_frame_stats=self._on_stats,
            policy=self.policy,
            inherited=inherited,
            handed=handed,
        )

    def _start(
        self,
        spec: StreamSpec,
        old: StreamEntry | None,
        inherited: list[DefectRecord],
        handed: list[tuple[str, str, float]],
    ) -> StreamEntry:
        """A cold start: the new runner continues or closes the open defects."""
        records = {r.id: r for r in inherited}
        if old is not None:
            records.update(self._retire(old, spec, handed))
        defects = self._adopt_open(spec, records.values())
        runner = self._new_runner(spec, defects, handed)
        entry = StreamEntry(spec, runner, time.time())
        with self._lock:
            self._streams[spec.id] = entry
        runner.start()
        return entry

    def _swap(
        self,
        spec: StreamSpec,
        runner: StreamRunner,
        inherited: list[DefectRecord],
        handed: list[tuple[str, str, float]],
        started: bool = True,
    ) -> StreamEntry:
        """``runner`` takes the stream over, on its analyser thread, once it has media."""
        entry = StreamEntry(spec, runner, time.time())
        with self._lock:
            self._swapping[spec.id] = entry
        runner.warm_deadline = time.monotonic() + self.timeout_s + WARM_SLACK_S
        runner.on_warm = lambda: self._promote(entry, inherited, handed)
        if not started:
            runner.start()
        with self._lock:
            current = self._streams.get(spec.id)
        return current if current is not None else entry

    def _promote(
        self,
        entry: StreamEntry,
        inherited: list[DefectRecord],
        handed: list[tuple[str, str, float]],
    ) -> None:
        """On the new runner's analyser thread: retire the old runner, then reconcile the
        new one's state with the committed open defects (``Lifecycle.take_over``)."""
        spec, runner = entry.spec, entry.runner
        with self._lock:
            if self._swapping.get(spec.id) is not entry:
                return  # superseded meanwhile (stopped by whoever replaced it)
            del self._swapping[spec.id]
            old = self._streams.get(spec.id)
        records = {r.id: r for r in inherited}
        if old is not None:
            records.update(self._retire(old, spec, handed))
            entry.created = old.created
        committed = self._adopt_open(spec, records.values())
        ended = self._recently_ended(spec, runner)
        with self._lock:
            self._streams[spec.id] = entry
        runner.take_over(committed, ended, handed)
        if runner.has_media:  # analysed its first frame while warming up
            self.on_first_frame(spec)

    def _retire(
        self, old: StreamEntry, spec: StreamSpec, handed: list[tuple[str, str, float]]
    ) -> dict[str, DefectRecord]:
        """Stop the stream's current runner: its open records (newer than Redis' copy,
        maybe queued) and its pending runs (into ``handed``) go to its successor."""
        old.runner.quiesce()  # nothing more from it once this returns
        groups = set(spec.groups)
        pending = old.runner.pending_runs()
        handed += [p for p in pending if registry.DETECTORS[p[0]].group in groups]
        records: dict[str, DefectRecord] = {}
        with self._lock:
            for key in [k for k in self._records if k[0] == spec.id]:
                record = self._records.pop(key)
                self._foreign.discard(record.id)
                records[record.id] = record
        return records

    def _adopt_open(self, spec: StreamSpec, records: Iterable[DefectRecord]) -> list[Defect]:
        """The open defects of ``spec``'s groups, as the runner continuing them holds them."""
        return [self._adopt(spec, r) for r in records if r.open and r.group in spec.groups]

    def _adopt(self, spec: StreamSpec, record: DefectRecord) -> Defect:
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
        return defect

    def _recently_ended(
        self, spec: StreamSpec, runner: StreamRunner
    ) -> dict[tuple[str, str], float]:
        """(type, key) -> end, on ``runner``'s timeline, of the stream's defects closed in
        the last minute: a run it raised while warming up may be one of them."""
        try:
            closed = self.store.query(spec.id, open_=False, since=time.time() - 60.0)
        except Exception as exc:  # the store unreachable: assume none
            log.warning("recent defects of %s not read (%s)", spec.id, exc)
            return {}
        ended: dict[tuple[str, str], float] = {}
        for r in closed:
            if r.group in spec.groups and r.ended_at is not None:
                end = runner.media_of(r.ended_at)
                ended[(r.type, r.key)] = max(end, ended.get((r.type, r.key), end))
        return ended

    def warm(self, spec: StreamSpec) -> float | None:
        """Cluster mode, before a handoff: run ``spec`` here without committing anything,
        so that when its units arrive (``run``) the runner already has the picture.
        Once it has media: the wall clock its media starts at (0 when its source gave
        none within the timeout); None until then."""
        with self._lock:
            entry = self._warming.get(spec.id)
        if entry is not None and entry.spec == spec:
            since = entry.runner.media_since_wall
            if since is not None:
                return since
            waited = time.time() - entry.created > self.timeout_s + WARM_SLACK_S
            return 0.0 if waited else None
        if entry is not None:
            entry.runner.stop()
        log.info("%s: warming up for %s", spec.id, ",".join(spec.groups))
        runner = self._new_runner(spec, [], [])
        with self._lock:
            self._warming[spec.id] = StreamEntry(spec, runner, time.time())
        runner.start()
        return None

    def analysed_to(self, stream_id: str, wall: float) -> bool:
        """Has the stream's runner here analysed the media that arrived by ``wall``?"""
        entry = self.get(stream_id)
        return entry is None or entry.runner.analysed_to(wall)

    def cool(self, keep: set[str]) -> None:
        """Stop the runners warming up for streams not in ``keep`` (handoff called off)."""
        with self._lock:
            gone = [self._warming.pop(sid) for sid in list(self._warming) if sid not in keep]
        for entry in gone:
            entry.runner.stop()

    def remove(self, stream_id: str, forget: bool = True, deleted: bool = True) -> bool:
        """Stop monitoring the stream here. ``deleted``: it is gone for good, so its open
        defects close first (committed, under the unit's lease in cluster mode);
        otherwise they are its next owner's. ``forget``: drop its records too."""
        with self._lock:
            entry = self._streams.get(stream_id)
            spares = [t.pop(stream_id, None) for t in (self._warming, self._swapping)]
        for spare in spares:
            if spare is not None:
                spare.runner.stop()
        if entry is None:
            return False
        if deleted:  # while it is still the stream's runner: its closes commit
            entry.runner.on_analyser(lambda: entry.runner.close_open("stream deleted"))
        with self._lock:
            if self._streams.get(stream_id) is entry:
                del self._streams[stream_id]
        entry.runner.quiesce()  # emits nothing more once this returns (then the release)
        with self._lock:  # its open defects are the next owner's (or deleted) now
            for key in [k for k in self._records if k[0] == stream_id]:
                self._foreign.discard(self._records.pop(key).id)
        if forget:
            self.store.forget_stream(stream_id)
        metrics.forget_stream(stream_id)
        return True

    def handed_out(self, stream_id: str, group: str) -> list[tuple[str, str, float]]:
        """The pending runs of ``group``'s detectors on the stream's runner here (for the
        unit's next owner)."""
        entry = self.get(stream_id)
        if entry is None:
            return []
        pending = entry.runner.pending_runs()  # not via a busy analyser's queue: no wait
        return [p for p in pending if registry.DETECTORS[p[0]].group == group]

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
        with self._lock:
            spares = [*self._warming.values(), *self._swapping.values()]
            self._warming.clear()
            self._swapping.clear()
        for entry in spares + self.all():
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
        with self._lock:
            if not _tells(self._streams.get(spec.id), runner, ev.defect.group):
                return  # warming up, replaced, or the unit moved on: not ours to tell
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
            if record.id in self._foreign:
                # Its start is on the previous owner's media timeline: extend it by the
                # wall time between the two.
                self._foreign.discard(record.id)
                record.ended_at = runner.wall_of(end)
                record.end = record.start + max(0.0, record.ended_at - record.started_at)
                log.info(
                    "%s: closing %s %s raised before this runner: media %.2f = wall %.2f, "
                    "%.2f s after its first media (its clock moved %.3f s since)", spec.id,
                    record.type, record.id, end, record.ended_at,
                    record.ended_at - (runner.media_since_wall or 0.0),
                    runner.wall_of(0.0) - (runner.first_media0 or runner.wall_of(0.0)),
                )  # fmt: skip
            else:  # as long on the wall as in the media (the runner's mapping settles)
                record.end = end
                record.ended_at = record.started_at + max(0.0, end - record.start)
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


def _tells(entry: StreamEntry | None, runner: StreamRunner, group: str) -> bool:
    """Whether ``runner``'s events of ``group`` are the stream's to commit now."""
    if entry is None or entry.runner is not runner:
        return False
    return group in entry.spec.groups or group == entry.spec.watch_group


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
