"""Frozen picture: mean absolute difference to the last *changed* frame <= -60 dB.

Semantics of FFmpeg's freezedetect (noise 0.001 of full scale, d=2 s): each frame is
compared with the reference (the last frame that changed); the run starts at the
reference frame and ends at the first changed frame. Measured on a luma sample grid.
A frozen *black* picture is left to the black detector (one alert, not two).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from service.detectors._pixels import black_threshold, sampled
from service.detectors.base import Change, Detector, Params
from service.media.frames import VideoFrame


class FreezeParams(Params):
    d: float = Field(2.0, ge=0.0, le=3600.0)
    noise: float = Field(
        0.001, gt=0.0, lt=1.0, description="mean abs difference, share of full scale"
    )


class FreezeDetector(Detector[FreezeParams]):
    name = "freeze"
    group = "video"
    params_model = FreezeParams
    wants_video = True

    def __init__(self, params: FreezeParams) -> None:
        super().__init__(params)
        self.ref: np.ndarray | None = None
        self.ref_t = 0.0
        self.ref_black = False
        self.active = False

    def on_video(self, frame: VideoFrame) -> list[Change]:
        grid = sampled(frame.luma)
        ref = self.ref
        if ref is not None and ref.shape == grid.shape:
            diff = np.subtract(grid, ref, dtype=np.int32)
            np.abs(diff, out=diff)
            mafd = float(diff.mean()) / (1 << frame.bit_depth)
            if mafd <= self.params.noise:
                if self.active or self.ref_black:
                    return []
                self.active = True
                return [Change(self.ref_t, True, details={"mafd": round(mafd, 6)})]
        out = [Change(frame.t, False)] if self.active else []
        self.active = False
        self.ref = grid.copy()
        self.ref_t = frame.t
        th = black_threshold(frame.black_level, frame.white_level, 0.10)
        self.ref_black = bool(np.count_nonzero(self.ref <= th) >= 0.98 * self.ref.size)
        return out
