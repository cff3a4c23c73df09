"""Build frames from numpy arrays and run detectors through the real lifecycle."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import av
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


def scene(i: int) -> np.ndarray:
    """A 160x90 picture of noise, a different one for each ``i``: moving content."""
    return np.random.default_rng(i).integers(40, 220, (90, 160), dtype=np.uint8)


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


def write_aac(
    target: Path | IO[bytes], x: np.ndarray, rate: int, fmt: str, bitrate: int = 128_000
) -> None:
    """Stereo ``x`` (2, n), float32, through FFmpeg's AAC encoder into ``target`` (a file
    or a buffer) in container ``fmt`` ("adts", "mpegts"...); the last frame zero-padded."""
    with av.open(target if not isinstance(target, Path) else str(target), "w", format=fmt) as out:
        stream = out.add_stream("aac", rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate, stream.layout = bitrate, "stereo"
        size = stream.codec_context.frame_size or 1024
        for i in range(0, x.shape[1], size):
            block = np.zeros((2, size), np.float32)
            block[:, : x.shape[1] - i] = x[:, i : i + size]
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
