"""Detector CPU time is measured on one input in ``TIME_ONE_IN`` and counted that many
times over: what ``avmon_detector_cpu_seconds_total`` and ``avmon check`` report still
adds up to what the detectors spent, for every phase of a detector's own rhythm."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from service.detectors.base import Change, Detector, Params
from service.media.frames import VideoFrame
from service.observability.sampling import TIME_ONE_IN
from service.pipeline.analyzer import Analyzer
from tests.detectors.helpers import vframe

BUSY_S = 0.002  # CPU burnt per call that works


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class _EveryOther(Detector[Params]):
    """Works on every other picture, as blockiness does (15 scores a second at 30 fps)."""

    name = "every_other"
    group = "video"
    wants_video = True

    def on_video(self, frame: VideoFrame) -> list[Change]:
        if frame.index % 2 == 0:
            _burn(BUSY_S)
        return []


class _Always(_EveryOther):
    name = "always"

    def on_video(self, frame: VideoFrame) -> list[Change]:
        _burn(BUSY_S)
        return []


def test_sampled_detector_time_adds_up_to_what_the_detectors_spent() -> None:
    detectors: list[Detector[Any]] = [_Always(Params()), _EveryOther(Params())]
    analyzer = Analyzer(detectors)
    luma = np.full((90, 160), 100, np.uint8)
    pictures = 20 * TIME_ONE_IN
    for i in range(pictures):
        analyzer.feed(vframe(i / 30, luma, index=i))
    spent = analyzer.detector_seconds
    # One picture in TIME_ONE_IN timed, counted TIME_ONE_IN times: at least 75 % of the
    # CPU burnt, and at most 1.6x (a loaded machine only adds to each timed call).
    assert 0.75 * pictures * BUSY_S <= spent["always"] <= 1.6 * pictures * BUSY_S
    assert 0.75 * pictures * BUSY_S / 2 <= spent["every_other"] <= 1.6 * pictures * BUSY_S / 2
