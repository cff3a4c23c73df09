"""Worker processes: use a pod's cores when threads stop scaling (the GIL).

With ``AVMON_WORKERS=N`` (embedded mode) the API process runs no streams itself: each
stream goes to the worker process running the fewest, where an ordinary Supervisor runs
it. Workers send back defect events (with evidence), stream status, thumbnails and
cumulative counters; the API process keeps the store, the live feed, webhooks and
metrics, so the API behaves exactly as with one process.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import asdict
from typing import Any

from service.events.bus import EventBus
from service.events.model import DefectRecord, FeedEvent
from service.events.sqlite_store import SqliteStore
from service.media import decode_frames, decode_threads
from service.media.guard import AddressPolicy
from service.observability import metrics
from service.pipeline.runner import StreamSpec
from service.pipeline.supervisor import DuplicateStreamError, Supervisor, new_stream_id

log = logging.getLogger(__name__)

REPORT_EVERY_S = 0.4


class _Forward:
    """A worker's 'store': every defect write goes to the API process."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def put(self, record: DefectRecord, evidence: bytes | None = None, kind: str = "open") -> bool:
        self.out.put(("defect", kind, record.stored_json(), evidence))
        return True

    def forget_stream(self, stream_id: str) -> None:
        pass


def worker_main(index: int, commands: Any, out: Any, options: dict[str, Any]) -> None:
    """Entry point of a worker process."""
    decode_threads.configure(options["decode_threads"], processes=options["workers"])
    decode_frames.configure(options["decode_frames"])
    supervisor = Supervisor(
        _Forward(out),  # type: ignore[arg-type]
        EventBus(feed_local=False),
        options["pod_name"],
        no_signal_s=options["no_signal_s"],
        timeout_s=options["timeout_s"],
        policy=AddressPolicy.from_lists(options["allowlist"], options["denylist"]),
    )
    sent_thumbs: dict[str, int] = {}
    while True:
        try:
            cmd = commands.get(timeout=REPORT_EVERY_S)
        except queue.Empty:
            cmd = None
        if cmd is not None:
            if cmd[0] == "stop":
                supervisor.stop_all(wait=1.0)
                return
            if cmd[0] == "add":
                inherited = [DefectRecord.from_json(doc) for doc in cmd[2]]
                supervisor.run(StreamSpec(**cmd[1]), inherited)
            elif cmd[0] == "remove":
                supervisor.remove(cmd[1], forget=False, deleted=False)  # closed upstream
        report: dict[str, Any] = {}
        for entry in supervisor.all():
            r = entry.runner
            thumb = r.thumbnail
            fresh_thumb = (
                thumb if thumb is not None and sent_thumbs.get(entry.spec.id) != id(thumb) else None
            )
            if fresh_thumb is not None:
                sent_thumbs[entry.spec.id] = id(thumb)
            report[entry.spec.id] = {
                "status": supervisor.status(entry),
                "thumbnail": fresh_thumb,
                "counters": {
                    "frames": r.stats.frames,
                    "dropped": r.stats.dropped,
                    "udp_drops": r.stats.udp_drops,
                    "decode_errors": r.stats.decode_errors,
                    "reconnects": r.stats.reconnects,
                    "lag": r.stats.lag_s,
                    "detectors": dict(r.analyzer.detector_seconds),
                    "detector_errors": dict(r.analyzer.detector_errors),
                },
            }
        out.put(("report", index, report))


class WorkerPool:
    """The API process's view of the workers (same interface as EmbeddedStreams)."""

    def __init__(self, n: int, store: SqliteStore, bus: EventBus, options: dict[str, Any]) -> None:
        self._ctx = mp.get_context("spawn")  # a clean interpreter: no threads inherited
        self._options = options
        self.store = store
        self.bus = bus
        self.pod = options["pod_name"]
        self.out: Any = self._ctx.Queue()
        self.commands: list[Any] = [self._ctx.Queue() for _ in range(n)]
        self.procs = [self._process(i) for i in range(n)]
        self.restarts = 0
        self.specs: dict[str, StreamSpec] = {}
        self.where: dict[str, int] = {}
        self.created: dict[str, float] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.thumbs: dict[str, bytes] = {}
        self.counters: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="workers", daemon=True)

    def _process(self, i: int) -> Any:
        args = (i, self.commands[i], self.out, self._options)
        return self._ctx.Process(target=worker_main, args=args, daemon=True)

    def start(self) -> None:
        for p in self.procs:
            p.start()
        self._thread.start()

    def _watch(self) -> None:
        """A worker that died (SIGKILL, OOM) is restarted and given its streams again,
        which show ``reconnecting`` until its reports arrive: never a frozen ``running``."""
        for i, p in enumerate(self.procs):
            if p.is_alive() or self._stop.is_set():
                continue
            log.error("worker %d died (exit code %s): restarting it", i, p.exitcode)
            metrics.WORKER_RESTARTS.inc()
            self.restarts += 1
            self.commands[i] = self._ctx.Queue()
            self.procs[i] = self._process(i)
            self.procs[i].start()
            with self._lock:
                mine = [sid for sid, w in self.where.items() if w == i]
                for sid in mine:
                    self.counters.pop(sid, None)  # the new worker counts from zero
                    known = self.status.get(sid)
                    if known is not None:
                        known.update(state="reconnecting", fps=0.0, last_error="worker restarted")
            for sid in mine:
                # The new worker continues (or closes) what the dead one had open.
                still_open = [r.stored_json() for r in self.store.query(sid, open_=True)]
                self.commands[i].put(("add", asdict(self.specs[sid]), still_open))

    def stop(self) -> None:
        for q in self.commands:
            q.put(("stop",))
        deadline = time.monotonic() + 3
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
        self._stop.set()

    # ------------------------------------------------------------------ streams API
    def create(self, name: str, url: str, detectors: list[str], **options: Any) -> dict[str, Any]:
        with self._lock:
            if any(s.name == name for s in self.specs.values()):
                raise DuplicateStreamError(name)
        spec = StreamSpec(id=new_stream_id(), name=name, url=url, detectors=detectors, **options)
        self.store.save_stream(spec.id, asdict(spec))  # runs again after a restart
        self.run(spec, [])
        return self._status(spec.id)

    def run(self, spec: StreamSpec, inherited: list[DefectRecord]) -> None:
        """Run ``spec`` on the least loaded worker, continuing ``inherited`` defects."""
        with self._lock:
            load = [0] * len(self.procs)
            for w in self.where.values():
                load[w] += 1
            worker = load.index(min(load))
            self.specs[spec.id] = spec
            self.where[spec.id] = worker
            self.created[spec.id] = time.time()
        self.commands[worker].put(("add", asdict(spec), [r.stored_json() for r in inherited]))

    def _status(self, stream_id: str) -> dict[str, Any]:
        spec = self.specs[stream_id]
        known = self.status.get(stream_id)
        if known is not None:
            return known
        from service.events.model import utc_iso

        return {
            "id": spec.id,
            "name": spec.name,
            "url": spec.url,
            "detectors": spec.detectors,
            "labels": spec.labels,
            "pace": spec.pace,
            "loop": spec.loop,
            "state": "pending",
            "units": [
                {
                    "group": g,
                    "owner": self.pod,
                    "epoch": None,
                    "running": False,
                    "since": utc_iso(self.created[stream_id]),
                }
                for g in spec.groups
            ],
            "fps": 0.0,
            "last_frame_at": None,
            "open_defects": 0,
            "frames": 0,
            "dropped_frames": 0,
            "lag_seconds": 0.0,
            "last_error": None,
        }

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = sorted(self.specs, key=lambda i: self.created[i])
        return [self._status(i) for i in ids]

    def get(self, stream_id: str) -> dict[str, Any] | None:
        return self._status(stream_id) if stream_id in self.specs else None

    def delete(self, stream_id: str) -> bool:
        with self._lock:
            if stream_id not in self.specs:
                return False
            del self.specs[stream_id]
            worker = self.where.pop(stream_id)
            self.status.pop(stream_id, None)
            self.thumbs.pop(stream_id, None)
            self.counters.pop(stream_id, None)
        self.commands[worker].put(("remove", stream_id))
        # Its open defects close here (the worker's later events for it are dropped):
        # receivers must not be left with alarms that never end.
        for record in self.store.query(stream_id, open_=True):
            record.ended_at = time.time()
            record.end = record.start + max(0.0, record.ended_at - record.started_at)
            record.details["closed_because"] = "stream deleted"
            if self.store.put(record, kind="close"):
                self.bus.publish(FeedEvent("close", record))
        self.store.delete_stream(stream_id)
        self.store.forget_stream(stream_id)
        metrics.forget_stream(stream_id)
        return True

    def thumbnail(self, stream_id: str) -> bytes | None:
        return self.thumbs.get(stream_id)

    def update_state_metrics(self) -> None:
        counts = dict.fromkeys(("pending", "running", "reconnecting", "down", "stopped"), 0)
        streams = self.list()
        for s in streams:
            counts[s["state"]] = counts.get(s["state"], 0) + 1
        for state, n in counts.items():
            metrics.STREAM_STATES.labels(state=state).set(n)
        metrics.UNITS_OWNED.set(sum(len(s["units"]) for s in streams))

    def cluster(self) -> dict[str, Any]:
        units = [
            {
                "stream_id": s["id"],
                "group": u["group"],
                "owner": self.pod,
                "epoch": None,
                "running": u["running"],
            }
            for s in self.list()
            for u in s["units"]
        ]
        member = {"id": self.pod, "ready": True, "units": len(units), "load": float(len(units))}
        return {"members": [member], "units": units, "generation": None}

    # ------------------------------------------------------------------ from workers
    def _receive(self) -> None:
        while not self._stop.is_set():
            self._watch()
            try:
                msg = self.out.get(timeout=0.5)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            try:
                if msg[0] == "defect":
                    self._defect(msg[1], msg[2], msg[3])
                elif msg[0] == "report":
                    self._report(msg[2])
            except Exception:
                log.exception("bad message from a worker")

    def _defect(self, kind: str, doc: dict[str, Any], evidence: bytes | None) -> None:
        record = DefectRecord.from_json(doc)
        if record.stream_id not in self.specs:
            return  # deleted meanwhile
        if self.store.put(record, evidence, kind=kind):
            self.bus.publish(FeedEvent(kind, record))  # type: ignore[arg-type]

    def _report(self, report: dict[str, Any]) -> None:
        for sid, item in report.items():
            with self._lock:
                if sid not in self.specs:
                    continue
                self.status[sid] = item["status"]
                if item["thumbnail"] is not None:
                    self.thumbs[sid] = item["thumbnail"]
                before = self.counters.get(sid, {})
                self.counters[sid] = item["counters"]
            _export(sid, before, item["counters"])
            for name, value in (item["status"].get("loudness") or {}).items():
                metrics.set_reading(sid, name, value)


def _export(sid: str, before: dict[str, Any], now: dict[str, Any]) -> None:
    """Cumulative worker counters -> this process's Prometheus metrics (by delta)."""
    for key, metric in (
        ("frames", metrics.FRAMES_DECODED),
        ("dropped", metrics.FRAMES_DROPPED),
        ("udp_drops", metrics.UDP_KERNEL_DROPS),
        ("decode_errors", metrics.DECODE_ERRORS),
        ("reconnects", metrics.RECONNECTS),
    ):
        delta = now[key] - before.get(key, 0)
        if delta > 0:
            metric.labels(stream_id=sid).inc(delta)
    metrics.ANALYSIS_LAG.labels(stream_id=sid).set(now["lag"])
    spent_before = before.get("detectors", {})
    for name, total in now["detectors"].items():
        delta = total - spent_before.get(name, 0.0)
        if delta > 0:
            metrics.DETECTOR_SECONDS.labels(detector=name).inc(delta)
    errors_before = before.get("detector_errors", {})
    for name, count in now["detector_errors"].items():
        if count > errors_before.get(name, 0):
            metrics.DETECTOR_ERRORS.labels(detector=name).inc(count - errors_before.get(name, 0))
