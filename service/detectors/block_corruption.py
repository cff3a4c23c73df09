"""Block corruption: the decoder reported damaged (concealed) frames or rejected packets.

Damage propagates through predicted frames until the next keyframe, unflagged, so a run
ends at the first clean keyframe, or -- for streams without keyframes (intra refresh) --
after ``recover_s`` of frames without any error.
"""

from __future__ import annotations

from pydantic import Field

from service.detectors.base import Change, Detector, Params
from service.media.frames import DecodeError, VideoFrame


class BlockCorruptionParams(Params):
    d: float = Field(0.0, ge=0.0, le=3600.0)
    recover_s: float = Field(5.0, gt=0.0, le=600.0)


class BlockCorruptionDetector(Detector[BlockCorruptionParams]):
    name = "block_corruption"
    group = "video"
    params_model = BlockCorruptionParams
    wants_video = True

    def __init__(self, params: BlockCorruptionParams) -> None:
        super().__init__(params)
        self.active = False
        self.last_bad = 0.0
        self.errors = 0
        self.first_clean: float | None = None

    def _damage(self, t: float) -> list[Change]:
        self.errors += 1
        self.last_bad = max(self.last_bad, t)
        self.first_clean = None
        if self.active:
            return []
        self.active = True
        return [Change(t, True, details={"reason": "decoder reported damaged frames"})]

    def on_decode_error(self, error: DecodeError) -> list[Change]:
        return self._damage(error.t) if error.kind == "video" else []

    def on_video(self, frame: VideoFrame) -> list[Change]:
        if frame.corrupt:
            return self._damage(frame.t)
        if not self.active or frame.t <= self.last_bad:
            return []
        if self.first_clean is None:
            self.first_clean = frame.t
        if frame.key:
            return self._recovered(frame.t)
        if frame.t - self.last_bad >= self.params.recover_s:
            return self._recovered(self.first_clean)
        return []

    def _recovered(self, t: float) -> list[Change]:
        self.active = False
        self.first_clean = None
        return [Change(t, False)]
