"""The defect lifecycle shared by every detector.

A detector reports when its condition turned on (dated to where it began) and off. A
run becomes a defect once it has lasted the detector's minimum duration: it is *raised*
then, with ``start`` dated back to the beginning of the run, and closed with ``end`` at
the first good frame. One good frame ends a run and runs are never bridged, so a defect
cannot flap faster than its minimum duration (the hysteresis).

A defect belongs to its unit, not to the process that raised it: a runner that takes a
unit over *inherits* the unit's open defects. If the detector finds the condition on from
the runner's first input (a run starting within the detector's ``resume_s`` of it), the
run continues the inherited defect (same id, no second ``open``); otherwise the inherited
defect closes at the first input, where the new owner first saw a good picture or sound.

Runs not yet raised are handed over too (``hand``): a run the new owner finds on from
its first input is dated back to where the previous owner saw it begin, so a condition
that straddles a handoff still counts its whole length against the minimum duration.
A runner warmed up before the handoff (make-before-break) ``take_over``s the unit's
open defects with its own state already built: no input is missed at all.
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
        self._inherited: dict[tuple[str, str], Defect] = {}
        self._first: dict[str, float] = {}  # detector -> media time of its first input
        self._handed: dict[tuple[str, str], float] = {}  # pending runs' starts, handed over
        # End of the last defect closed per (detector, key): a later run never starts
        # before it, so one condition's defects never overlap (a detector may date a run
        # back, e.g. clipping joining bursts, past a defect it does not know was raised:
        # one inherited from the unit's previous owner).
        self._closed: dict[tuple[str, str], float] = {}
        self._input_t = 0.0  # start of the input being analysed (see ``input``)
        # Detectors with runs pending across a gap in the media (see ``gap``).
        self._after_gap: set[str] = set()

    def input(self, t: float) -> None:
        """The analyser is about to feed the detectors input starting at media time ``t``."""
        self._input_t = t

    def gap(self) -> None:
        """Media was missing (the source was lost and came back): a run not raised yet
        restarts at its detector's first input after the gap -- time nobody saw does
        not count towards ``d``. A raised defect stays open: the media after the gap
        says whether it goes on."""
        self._after_gap = {name for (name, _), run in self._runs.items() if run.defect is None}

    def _resume(self, det: Detector[Any]) -> None:
        self._after_gap.discard(det.name)
        for (name, _), run in self._runs.items():
            if name == det.name and run.defect is None and run.start < self._input_t:
                run.start = self._input_t

    def inherit(self, defect: Defect) -> None:
        """An open defect of this unit raised by its previous owner (see module doc)."""
        self._inherited[(defect.type, defect.key)] = defect

    def hand(self, detector: str, key: str, start: float) -> None:
        """A run of this unit the previous owner saw begin at ``start`` (media time, on
        this timeline) and had not raised yet: a run found on from the first input (or
        one already pending from it) continues it."""
        run = self._runs.get((detector, key))
        if run is None:
            self._handed[(detector, key)] = start
        elif run.defect is None and run.start <= self._first.get(detector, run.start) + 0.5:
            run.start = min(run.start, start)

    def apply(self, det: Detector[Any], changes: list[Change], now: float) -> list[DefectEvent]:
        if det.name in self._after_gap:
            self._resume(det)
        first = self._first.setdefault(det.name, self._input_t)
        events: list[DefectEvent] = []
        for ch in changes:
            key = (det.name, ch.key)
            run = self._runs.get(key)
            if ch.active:
                if run is None:
                    start = ch.t
                    closed = self._closed.get(key, start)
                    if start < closed <= now:  # (a closed end ahead of now: media time reset)
                        start = closed
                    run = self._runs[key] = _Run(start, dict(ch.details))
                    handed = self._handed.pop(key, None)
                    if handed is not None and ch.t <= first + det.resume_s:
                        run.start = min(run.start, handed)
                    inherited = self._inherited.pop(key, None)
                    if inherited is not None and ch.t <= first + det.resume_s:
                        run.defect = inherited  # the same condition, still on
                    elif inherited is not None:
                        events.append(self._close(inherited, first, now))
                continue
            if run is None:
                continue
            del self._runs[key]
            if run.defect is None and _lasted(ch.t - run.start, det):
                run.defect = self._raise(det, ch.key, run, events, now)
            if run.defect is not None:
                run.defect.end = max(ch.t, run.defect.start)
                run.defect.details.update(ch.details)  # what is known only at the end
                events.append(DefectEvent("close", run.defect, now))
                self._closed[key] = run.defect.end
        events += self.tick(det, now)
        return events

    def tick(self, det: Detector[Any], now: float) -> list[DefectEvent]:
        """Raise the detector's pending runs that have now lasted long enough; close the
        inherited defects the detector has not found on within ``resume_s``."""
        if det.name in self._after_gap:
            self._resume(det)
        events: list[DefectEvent] = []
        if self._inherited or self._handed:
            first = self._first.setdefault(det.name, self._input_t)
            if now >= first + det.resume_s:
                for ended in [k for k in self._inherited if k[0] == det.name]:
                    events.append(self._close(self._inherited.pop(ended), first, now))
                for gone in [k for k in self._handed if k[0] == det.name]:
                    del self._handed[gone]  # not found on by then: it ended meanwhile
        for (name, key), run in self._runs.items():
            if name == det.name and run.defect is None and _lasted(now - run.start, det):
                run.defect = self._raise(det, key, run, events, now)
        return events

    def finish(self, detectors: list[Detector[Any]], t_end: float) -> list[DefectEvent]:
        """End of input: close what is open at ``t_end``; raise runs long enough by then."""
        events: list[DefectEvent] = []
        by_name = {d.name: d for d in detectors}
        for (name, _), inherited in list(self._inherited.items()):
            events.append(self._close(inherited, self._first.get(name, t_end), t_end))
        self._inherited.clear()
        for (name, key), run in list(self._runs.items()):
            det = by_name[name]
            if run.defect is None and _lasted(t_end - run.start, det):
                run.defect = self._raise(det, key, run, events, t_end)
            if run.defect is not None:
                run.defect.end = max(t_end, run.defect.start)
                events.append(DefectEvent("close", run.defect, t_end))
        self._runs.clear()
        return events

    def pending(self) -> list[tuple[str, str, float]]:
        """(detector, key, start) of the runs not raised yet."""
        # A snapshot (one C-level copy under the GIL): safe from another thread, so a
        # member handing a unit over need not wait for a busy analyser.
        runs = list(self._runs.items())
        return [(n, k, r.start) for (n, k), r in runs if r.defect is None]

    def take_over(
        self, committed: list[Defect], ended: dict[tuple[str, str], float], now: float
    ) -> list[DefectEvent]:
        """This lifecycle, warmed up alongside the unit's previous runner, becomes the
        unit's. ``committed``: its open defects as committed (by whoever owned it);
        ``ended``: (type, key) -> end (on this timeline) of the defects the previous
        runner closed lately.

        - a run on here that is committed open continues it (same defect, no event);
        - a run raised here while warming up (nothing committed) opens now -- unless it
          began before the previous runner closed that condition: the same run, already
          reported open and closed;
        - a committed defect with no run on here closes now: the condition ended.
        Returns the events to commit."""
        by_key = {(d.type, d.key): d for d in committed}
        events: list[DefectEvent] = []
        for key, run in self._runs.items():
            known = by_key.pop(key, None)
            if known is not None:
                run.defect = known
            elif run.defect is not None and run.start > ended.get(key, float("-inf")):
                events.append(DefectEvent("open", run.defect, now))
        for defect in by_key.values():
            events.append(self._close(defect, now, now))
        return events

    def open_defects(self) -> list[Defect]:
        raised = [r.defect for r in self._runs.values() if r.defect is not None]
        return raised + [d for d in self._inherited.values() if d not in raised]

    @staticmethod
    def _close(defect: Defect, end: float, now: float) -> DefectEvent:
        defect.end = max(end, defect.start)
        return DefectEvent("close", defect, now)

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
