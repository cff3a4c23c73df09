"""A run the previous owner saw begin, handed over with the unit, counts its whole length:
a new runner that finds the condition on from its first frame dates it back to where the
previous owner saw it begin (wall clock), so a black run that straddles a cold handoff is
raised although each runner saw less than d of it. Real PyAV decoding of a real clip,
paced live."""

from __future__ import annotations

import threading
import time

from service.pipeline.lifecycle import DefectEvent
from service.pipeline.runner import StreamRunner, StreamSpec
from tests.conftest import ClipFactory
from tests.pipeline.runners import run_to_the_end

SEEN_BEFORE_S = 1.0  # the previous owner saw the run begin this long before


def _run(clip: str, handed: list[tuple[str, str, float]]) -> list[DefectEvent]:
    events: list[DefectEvent] = []
    lock = threading.Lock()

    def on_event(_: StreamRunner, ev: DefectEvent, __: bytes | None) -> None:
        with lock:
            events.append(ev)

    spec = StreamSpec(id="s1", name="cam", url=clip, detectors=["black"], pace="live")
    runner = StreamRunner(spec, on_event, handed=handed)
    run_to_the_end(runner)
    with lock:
        return list(events)


def test_a_handed_run_still_on_at_the_first_frame_is_dated_back(make_clip: ClipFactory) -> None:
    # Black for 1.2 s from the new runner's first frame: less than d = 2 s on its own.
    clip, _ = make_clip("black@0-1.2", duration=3.0, size="320x180")
    events = _run(str(clip), [("black", "", time.time() - SEEN_BEFORE_S)])
    assert [e.kind for e in events] == ["open", "close"], events
    opened = events[0].defect
    # Dated back by what the previous owner saw (the first frame comes after the probe).
    assert -SEEN_BEFORE_S - 1.0 < opened.start < -SEEN_BEFORE_S + 0.5, opened
    assert opened.end is not None and abs(opened.end - 1.2) < 0.1, opened


def test_without_the_handed_run_the_short_remainder_is_not_raised(make_clip: ClipFactory) -> None:
    clip, _ = make_clip("black@0-1.2", duration=3.0, size="320x180")
    assert _run(str(clip), []) == []
