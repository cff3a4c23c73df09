"""Slow motion is not a freeze: a smooth gradient turning slowly (FFmpeg's lavfi
`gradients`) changes 0.0001-0.0005 of full scale a frame, under freezedetect's `noise`,
and drifts past it within a few frames: FFmpeg sees no still run. avmon lets a held
picture drift (`drift`) and step away and come back (`return_s`, the coarse picture) as
encoders re-code it; such a picture, drifting past `drift` a frame at a time, used to
"come back" on the next frame still against the one before, and the returns chained into
a freeze of 5 s that never was -- coded intra-only (x264 keyint=1, as a contribution
codec codes every frame) and as MPEG-2 with its GOPs. A picture that left by drifting is
moving: only a step (past `noise` from the frame before) may come back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from service.pipeline.check import check
from tests.ffmpeg_ref import run_reference
from tests.lavfi_clips import RATE, encode_frames, unforced

# One of FFmpeg's random gradients, fixed (its `seed` does not fix the points here).
GRADIENT = (
    "size=640x360:rate={rate}:x0=594:y0=33:x1=620:y1=6:"
    "c0=0x42c6c6:c1=0xbd6ac3:c2=0xf2b725:nb_colors=3:type=spiral"
)
CODINGS = {
    "x264 intra-only": ("libx264", {"crf": "20", "preset": "veryfast", "x264-params": "keyint=1"}),
    "MPEG-2 GOPs": ("mpeg2video", {"b": "8M", "threads": "1"}),
}


def gradient(seconds: float) -> Iterator[av.VideoFrame]:
    graph = av.filter.Graph()
    src = graph.add("gradients", GRADIENT.format(rate=RATE))
    fmt = graph.add("format", "yuv420p")
    sink = graph.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    for _ in range(round(seconds * RATE)):
        frame = sink.pull()
        assert isinstance(frame, av.VideoFrame)
        yield unforced(frame)


@pytest.mark.parametrize("coding", list(CODINGS))
def test_a_slowly_turning_gradient_is_no_freeze(tmp_path: Path, coding: str) -> None:
    codec, options = CODINGS[coding]
    clip = encode_frames(gradient(12.0), tmp_path / "g.ts", codec, options)
    assert run_reference(clip, d=2.0).windows("freeze", 2.0) == []  # FFmpeg: none
    found = [(d.start, d.end) for d in check(str(clip), detectors=["freeze"]).defects]
    assert found == []
