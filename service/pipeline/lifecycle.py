"""The defect lifecycle shared by every detector.

A detector reports when its condition turned on (dated to where it began) and off. A
run becomes a defect once it has lasted the detector's minimum duration: it is *raised*
then, with ``start`` dated back to the beginning of the run, and closed with ``end`` at
the first good frame. One good frame ends a run and runs are never bridged, so a defect
cannot flap faster than its minimum duration (the hysteresis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from service.detectors.base import Change, Detector


@dataclass(slots=True)
class Defect:
    type: str
    group: str
    key: str
    start: float
    severity: str
    details: dict[str, Any] = field(default_factory=dict)
    end: float | None = None

    @property
    def open(self) -> bool:
        return self.end is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3),
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class DefectEvent:
    kind: Literal["open", "close"]
    defect: Defect
    at: float  # media time at which the event was decided


# Media times are float seconds: a run of exactly d (60 frames at 30 fps) can come out
# as 1.9999999999999998 s. FFmpeg compares integer timestamps; allow for the dust.
_EPS = 1e-6


def _lasted(length: float, det: Detector[Any]) -> bool:
    return length >= det.min_duration - _EPS


@dataclass(slots=True)
class _Run:
    start: float
    details: dict[str, Any]
    defect: Defect | None = None  # set once raised


class Lifecycle:
    """Turns detectors' changes into open/close events, applying minimum durations."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], _Run] = {}

    def apply(self, det: Detector[Any], changes: list[Change], now: float) -> list[DefectEvent]:
        events: list[DefectEvent] = []
        for ch in changes:
            key = (det.name, ch.key)
            run = self._runs.get(key)
            if ch.active:
                if run is None:
                    self._runs[key] = _Run(ch.t, dict(ch.details))
                continue
            if run is None:
                continue
            del self._runs[key]
            if run.defect is None and _lasted(ch.t - run.start, det):
                run.defect = self._raise(det, ch.key, run, events, now)
            if run.defect is not None:
                run.defect.end = max(ch.t, run.defect.start)
                events.append(DefectEvent("close", run.defect, now))
        events += self.tick(det, now)
        return events

    def tick(self, det: Detector[Any], now: float) -> list[DefectEvent]:
        """Raise the detector's pending runs that have now lasted long enough."""
        events: list[DefectEvent] = []
        for (name, key), run in self._runs.items():
            if name == det.name and run.defect is None and _lasted(now - run.start, det):
                run.defect = self._raise(det, key, run, events, now)
        return events

    def finish(self, detectors: list[Detector[Any]], t_end: float) -> list[DefectEvent]:
        """End of input: close what is open at ``t_end``; raise runs long enough by then."""
        events: list[DefectEvent] = []
        by_name = {d.name: d for d in detectors}
        for (name, key), run in list(self._runs.items()):
            det = by_name[name]
            if run.defect is None and _lasted(t_end - run.start, det):
                run.defect = self._raise(det, key, run, events, t_end)
            if run.defect is not None:
                run.defect.end = max(t_end, run.defect.start)
                events.append(DefectEvent("close", run.defect, t_end))
        self._runs.clear()
        return events

    def open_defects(self) -> list[Defect]:
        return [r.defect for r in self._runs.values() if r.defect is not None]

    @staticmethod
    def _raise(
        det: Detector[Any], key: str, run: _Run, events: list[DefectEvent], now: float
    ) -> Defect:
        defect = Defect(
            type=det.name,
            group=det.group,
            key=key,
            start=run.start,
            severity=det.params.severity,
            details=run.details,
        )
        events.append(DefectEvent("open", defect, now))
        return defect
