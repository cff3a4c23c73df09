"""A stopped runner (handed over, superseded, deleted) emits nothing more: neither the
frames still queued for its analyser nor the one a detector was busy with when it was
stopped -- the stream's defects are its successor's by then. Real clip, real PyAV."""

from __future__ import annotations

import threading
import time

from service.media.decoder import MediaItem
from service.media.frames import VideoFrame
from service.pipeline.lifecycle import DefectEvent
from service.pipeline.runner import StreamRunner, StreamSpec
from tests.conftest import ClipFactory
from tests.integration.service_proc import wait_for

# Black from the first picture, raised after 0.1 s of it: the first few pictures open it.
SPEC = {"detectors": ["black"], "thresholds": {"black": {"d": 0.1}}}


def _runner(make_clip: ClipFactory) -> tuple[StreamRunner, list[DefectEvent]]:
    clip, _ = make_clip("black@0-3", duration=4.0, size="320x180")
    told: list[DefectEvent] = []
    spec = StreamSpec(id="s1", name="cam", url=str(clip), **SPEC)  # type: ignore[arg-type]
    return StreamRunner(spec, lambda _r, ev, _e: told.append(ev)), told


def test_frames_queued_when_a_runner_stops_emit_nothing(make_clip: ClipFactory) -> None:
    runner, told = _runner(make_clip)
    release = threading.Event()
    runner.call_soon(lambda: release.wait(10))  # the analyser's first task: held
    try:
        runner.start()
        # The reader queues a second of black (30 pictures) behind the held analyser.
        assert wait_for(lambda: runner._video_queued >= 20, 10), runner._video_queued
        runner.stop()
        release.set()
        time.sleep(1.0)  # what the analyser would do with the queue, it has done
        assert told == [], told
    finally:
        release.set()
        runner.stop(wait=10.0)


def test_a_frame_in_analysis_when_a_runner_stops_emits_nothing(make_clip: ClipFactory) -> None:
    runner, told = _runner(make_clip)
    feed = runner.analyzer.feed
    inside = threading.Event()

    def slow(item: MediaItem) -> list[DefectEvent]:
        events = feed(item)
        if isinstance(item, VideoFrame) and any(ev.kind == "open" for ev in events):
            inside.set()  # a detector still busy (a starved core) when it is stopped
            wait_for(runner._stop.is_set, 10)
        return events

    runner.analyzer.feed = slow  # type: ignore[method-assign]
    try:
        runner.start()
        assert inside.wait(10), "black was never raised"
        runner.quiesce(timeout=0.2)  # as a handover does: it gives up on a busy analyser
        time.sleep(1.0)
        assert told == [], told
    finally:
        runner.stop(wait=10.0)
