"""One condition's defects never overlap: a run a detector dates back past the end of a
defect of the same type and key (clipping joining bursts after a takeover, loudness
dating a step) starts where that defect ended -- unless media time went back (a source
restarted from zero), where the old end belongs to another timeline."""

from __future__ import annotations

from service.detectors.base import Change, Detector, Params
from service.pipeline.lifecycle import DefectEvent, Lifecycle


class Scripted(Detector[Params]):
    """A real detector whose changes the test hands it, one input at a time."""

    name = "scripted"
    group = "video"


def drive(steps: list[tuple[float, list[Change]]]) -> list[tuple[str, float, float | None]]:
    det = Scripted(Params(d=2.0))
    life = Lifecycle()
    events: list[DefectEvent] = []
    for now, changes in steps:
        life.input(now)
        events += life.apply(det, changes, now) if changes else life.tick(det, now)
    return [(e.kind, e.defect.start, e.defect.end) for e in events]


def test_a_run_dated_back_into_a_closed_defect_starts_at_its_end() -> None:
    got = drive(
        [
            (10.0, [Change(10.0, True)]),
            (12.0, []),  # raised: lasted d
            (13.0, [Change(13.0, False)]),
            (14.0, [Change(12.0, True)]),  # dated back to 12, inside the closed 10-13
            (14.9, []),
            (15.0, []),  # 2 s after 13: raised
            (16.0, [Change(16.0, False)]),
        ]
    )
    assert got == [
        ("open", 10.0, 13.0),
        ("close", 10.0, 13.0),
        ("open", 13.0, 16.0),
        ("close", 13.0, 16.0),
    ]


def test_after_media_time_goes_back_a_run_keeps_its_own_start() -> None:
    got = drive(
        [
            (10.0, [Change(10.0, True)]),
            (12.0, []),
            (13.0, [Change(13.0, False)]),
            (1.0, [Change(1.0, True)]),  # the source restarted from zero
            (3.0, []),
            (4.0, [Change(4.0, False)]),
        ]
    )
    assert got[2:] == [("open", 1.0, 4.0), ("close", 1.0, 4.0)]
