"""Build frames from numpy arrays and run detectors through the real lifecycle."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from service.detectors import registry
from service.media.frames import AudioFrame, Gap, VideoFrame
from service.pipeline.analyzer import Analyzer
from service.pipeline.lifecycle import DefectEvent


def vframe(
    t: float, luma: np.ndarray, index: int = 0, corrupt: bool = False, key: bool = False
) -> VideoFrame:
    return VideoFrame(
        t=t,
        luma=luma,
        black_level=16,
        white_level=235,
        bit_depth=8,
        corrupt=corrupt,
        key=key,
        index=index,
    )


def audio_frames(samples: np.ndarray, rate: int = 48000, block: int = 1024) -> list[AudioFrame]:
    return [
        AudioFrame(
            t=i / rate, samples=samples[:, i : i + block].astype(np.float32), sample_rate=rate
        )
        for i in range(0, samples.shape[1], block)
    ]


def run(
    names: list[str],
    items: Iterable[Any],
    thresholds: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[DefectEvent], list[dict[str, Any]]]:
    """Feed items through an Analyzer; return the events and the final defects."""
    analyzer = Analyzer(registry.build(names, thresholds))
    events: list[DefectEvent] = []
    for item in items:
        events += analyzer.gap(item.t) if isinstance(item, Gap) else analyzer.feed(item)
    events += analyzer.finish()
    defects = [e.defect.as_dict() for e in events if e.kind == "open"]
    return events, defects
