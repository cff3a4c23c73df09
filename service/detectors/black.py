"""Black picture: >= 98% of luma samples at or below 10% of the nominal range.

Semantics of FFmpeg's blackdetect (pix_th=0.10, picture_black_ratio_th=0.98, d=2 s),
measured on a regular sample grid instead of every pixel.
"""

from __future__ import annotations

from pydantic import Field

from service.detectors._pixels import black_threshold
from service.detectors.base import Change, Detector, Params
from service.media.frames import VideoFrame


class BlackParams(Params):
    d: float = Field(2.0, ge=0.0, le=3600.0)
    pix_th: float = Field(0.10, ge=0.0, le=1.0, description="pixel threshold, share of range")
    picture_black_ratio_th: float = Field(0.98, gt=0.0, le=1.0)


class BlackDetector(Detector[BlackParams]):
    name = "black"
    group = "video"
    params_model = BlackParams
    wants_video = True

    def __init__(self, params: BlackParams) -> None:
        super().__init__(params)
        self.active = False

    def on_video(self, frame: VideoFrame) -> list[Change]:
        grid = frame.grid()
        th = black_threshold(frame.black_level, frame.white_level, self.params.pix_th)
        ratio = frame.dark_samples(th) / grid.size
        black = bool(ratio >= self.params.picture_black_ratio_th)
        if black == self.active:
            return []
        self.active = black
        details = {"black_ratio": round(float(ratio), 4)} if black else {}
        return [Change(frame.t, black, details=details)]
