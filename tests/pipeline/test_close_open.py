"""Closing a deleted stream's open defects is the runner's last word: a frame analysed
after it (the analyser keeps going until the runner is stopped, a moment later) must not
close the same defect a second time -- receivers would get two closes for one alarm
(seen on the e2e: ``open, close, close``). Real PyAV decoding of a real clip, paced live."""

from __future__ import annotations

import threading
import time

from service.pipeline.lifecycle import DefectEvent
from service.pipeline.runner import StreamRunner, StreamSpec
from tests.conftest import ClipFactory
from tests.integration.service_proc import wait_for


def test_no_event_follows_the_closes_of_a_deleted_stream(make_clip: ClipFactory) -> None:
    clip, _ = make_clip("black@1-4", duration=6.0, size="320x180")
    events: list[tuple[str, str, str | None]] = []
    lock = threading.Lock()

    def on_event(_: StreamRunner, ev: DefectEvent, __: bytes | None) -> None:
        with lock:
            events.append((ev.kind, ev.defect.type, ev.defect.details.get("closed_because")))

    spec = StreamSpec(id="s1", name="cam", url=str(clip), detectors=["black"], pace="live")
    runner = StreamRunner(spec, on_event)
    runner.start()
    try:
        assert wait_for(lambda: ("open", "black", None) in events, 10), events
        runner.on_analyser(lambda: runner.close_open("stream deleted"))
        time.sleep(2.5)  # the black run ends (4 s) while the analyser still runs
        with lock:
            assert events == [("open", "black", None), ("close", "black", "stream deleted")]
    finally:
        runner.stop()
