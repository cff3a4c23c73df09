"""What every detector is: a small state machine over frames that reports *changes*.

A detector never decides when a defect is raised; it reports when its condition turned on
(dated to where it truly began) and off (at the first good frame or sample). The pipeline's
lifecycle applies the minimum duration, so every detector gets FFmpeg's semantics for free:
raise once the run has lasted ``min_duration``, start dated back, a single good frame ends
a run, runs never bridged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from service.media.frames import AudioFrame, DecodeError, VideoFrame


class Params(BaseModel):
    """Per-detector thresholds; unknown keys are rejected so typos fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    d: float = Field(2.0, ge=0.0, le=3600.0, description="minimum duration, seconds")
    severity: str = Field("critical", pattern="^(warning|critical)$")


@dataclass(frozen=True, slots=True)
class Change:
    """The detector's condition for ``key`` turned on (``active``) or off at media time ``t``."""

    t: float
    active: bool
    key: str = ""
    details: dict[str, Any] = field(default_factory=dict)


P = TypeVar("P", bound=Params)


class Detector(Generic[P]):
    """Base class. Subclasses set the class attributes and override what they consume."""

    name: ClassVar[str]
    group: ClassVar[str]  # "video" | "audio" | "sync"
    params_model: ClassVar[type[Params]] = Params
    wants_video: ClassVar[bool] = False
    wants_audio: ClassVar[bool] = False
    # After taking a unit over: media time from the first input within which a condition
    # already on is reported (dated to that input). A run found starting by then
    # continues the previous owner's open defect; none found by then closes it.
    resume_after_s: ClassVar[float] = 0.5

    def __init__(self, params: P) -> None:
        self.params = params

    @property
    def min_duration(self) -> float:
        return self.params.d

    @property
    def resume_s(self) -> float:
        return self.resume_after_s

    def on_video(self, frame: VideoFrame) -> list[Change]:
        return []

    def every_frame_until(self) -> float:
        """Media time until which this detector needs every picture decoded (a one-frame
        event may be coming); reference pictures are enough otherwise
        (service.media.decode_frames). Never, unless a detector says so."""
        return -math.inf

    def on_audio(self, frame: AudioFrame) -> list[Change]:
        return []

    def on_decode_error(self, error: DecodeError) -> list[Change]:
        return []

    def on_gap(self, t: float) -> None:
        """Media is missing up to ``t`` (the source was lost): forget what measures
        continuity across inputs. Runs pending at the gap restart after it (the
        lifecycle's job); a detector overrides this only for its own state."""

    def readings(self) -> dict[str, float]:
        """Measurements worth showing per stream (metrics, status), by name."""
        return {}

    def finish(self, t: float) -> list[Change]:
        """End of input at media time ``t``; the lifecycle closes whatever is still open."""
        return []
