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
from tests.gst_clips import encode
from tests.lavfi_clips import RATE, encode_frames, source_frames

# One of FFmpeg's random gradients, fixed (its `seed` does not fix the points here).
GRADIENT = "x0=594:y0=33:x1=620:y1=6:c0=0x42c6c6:c1=0xbd6ac3:c2=0xf2b725:nb_colors=3:type=spiral"
CODINGS = {
    "x264 intra-only": ("libx264", {"crf": "20", "preset": "veryfast", "x264-params": "keyint=1"}),
    "MPEG-2 GOPs": ("mpeg2video", {"b": "8M", "threads": "1"}),
}


def gradient(seconds: float) -> Iterator[av.VideoFrame]:
    return source_frames("gradients", "640x360", round(seconds * RATE), options=GRADIENT)


@pytest.mark.parametrize("coding", list(CODINGS))
def test_a_slowly_turning_gradient_is_no_freeze(tmp_path: Path, coding: str) -> None:
    codec, options = CODINGS[coding]
    clip = encode_frames(gradient(12.0), tmp_path / "g.ts", codec, options)
    assert run_reference(clip, d=2.0).windows("freeze", 2.0) == []  # FFmpeg: none
    found = [(d.start, d.end) for d in check(str(clip), detectors=["freeze"]).defects]
    assert found == []


def test_a_refiner_that_drifts_off_and_steps_back_is_one_freeze(tmp_path: Path) -> None:
    """The other side of the rule: mjpegtools' MPEG-2 (GStreamer) refines a still
    checkerboard on the 8-pixel grid past `drift` a frame at a time, 1.47 s in, and its
    key frame steps it back. A step since it left lets it come back: one freeze from the
    first picture (with "left in a step" alone it was found from 1.53)."""
    source = (
        "videotestsrc pattern=checkers-8 num-buffers=180 ! video/x-raw,format=I420,"
        "width=1280,height=720,framerate=30/1"
    )
    clip = encode("mpeg2 4M", source, tmp_path / "checkers.ts")
    found = [(d.start, d.end) for d in check(str(clip), detectors=["freeze"]).defects]
    assert len(found) == 1 and found[0][0] <= 0.1 and found[0][1] >= 5.9, found
