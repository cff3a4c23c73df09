"""When analysis stalls on a live source, what waits for it is bounded in items -- audio
included, which the reader hands over in batches of up to HAND_OVER_ITEMS -- and the rest
is dropped and counted, not queued without end. Real sender (MPEG-TS over HTTP), real
PyAV; the stall is the analyser's own task queue kept busy."""

from __future__ import annotations

import threading
import time

import pytest

from service.media.decoder import MediaItem
from service.media.frames import AudioFrame
from service.pipeline import runner as runner_module
from service.pipeline.lifecycle import DefectEvent
from service.pipeline.runner import HAND_OVER_ITEMS, StreamRunner, StreamSpec
from tests.conftest import ClipFactory
from tests.integration.live_http import LiveHttpSource
from tests.integration.service_proc import wait_for

BOUND = 48  # items (~1 s of AAC frames at 48 kHz): small, so the test stalls briefly
STALL_S = 4.0


def test_stalled_analysis_of_live_audio_queues_a_bounded_number_of_items(
    make_clip: ClipFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "QUEUE_MAX_ITEMS", BOUND)
    clip, _ = make_clip("", duration=8.0, size="320x180")
    live = LiveHttpSource(clip)
    fed: list[float] = []  # when each audio frame fed to the detectors had arrived
    release = threading.Event()
    spec = StreamSpec(id="s1", name="radio", url=live.url, detectors=["silence"])
    runner = StreamRunner(spec, lambda *_: None)
    feed = runner.analyzer.feed

    def record(item: MediaItem) -> list[DefectEvent]:
        if isinstance(item, AudioFrame):
            fed.append(item.arrived)
        return feed(item)

    runner.analyzer.feed = record  # type: ignore[method-assign]
    stall: list[float] = []

    def hold() -> None:  # the analyser's task: wait while the reader reads on
        assert wait_for(lambda: runner.last_packet_wall is not None, 10)
        stall.append(time.time())
        release.wait(STALL_S)
        stall.append(time.time())

    try:
        runner.call_soon(hold)
        runner.start()
        assert wait_for(lambda: len(stall) == 2, STALL_S + 15), "the stall never ended"
        assert wait_for(lambda: bool(fed) and fed[-1] > stall[1], 10), "analysis never resumed"
        # Nothing was analysed before the stall (the analyser's first task): every audio
        # frame that had arrived by its end waited for it.
        during = [a for a in fed if a <= stall[1]]
        dropped = runner.stats.dropped
        print(f"FIGURE stalled {STALL_S:g} s: {len(during)} audio frames kept, {dropped} dropped")
        # What waited: the bound, plus a batch being built when the room ran out.
        assert len(during) <= BOUND + HAND_OVER_ITEMS, (len(during), dropped)
        # ~47 AAC frames a second arrived throughout: the rest were dropped, and counted.
        assert dropped >= 47 * (STALL_S - 1.5) - BOUND, (len(during), dropped)
    finally:
        release.set()
        runner.stop(wait=15.0)
        live.close()
