"""Request and response bodies (the OpenAPI contract of DESIGN.md section 4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.media.guard import redact

ShortText = Annotated[str, Field(max_length=256)]
LabelKey = Annotated[str, Field(min_length=1, max_length=63)]


class StreamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]*$")
    url: str = Field(min_length=1, max_length=2048)
    detectors: list[str] | None = Field(None, max_length=32, description="names or groups")
    thresholds: dict[str, dict[str, float | int | ShortText]] | None = None
    labels: dict[LabelKey, ShortText] | None = Field(None, max_length=32)
    pace: Literal["live", "asap"] = "live"
    loop: bool = False


class Unit(BaseModel):
    group: str
    owner: str | None
    epoch: int | None
    running: bool
    since: str | None


# Every response carrying a source URL shows it without its credentials.
RedactedUrl = Annotated[str, AfterValidator(redact)]


class Stream(BaseModel):
    id: str
    name: str
    url: RedactedUrl
    detectors: list[str]
    labels: dict[str, str]
    pace: str
    loop: bool
    state: Literal["pending", "running", "reconnecting", "down", "stopped"]
    units: list[Unit]
    fps: float
    last_frame_at: str | None
    open_defects: int
    frames: int
    dropped_frames: int
    lag_seconds: float
    last_error: str | None
    # EBU R128 per stream (momentary/short_term/integrated_lufs, range_lu,
    # true_peak_dbtp), once audio has been analysed.
    loudness: dict[str, float] | None = None


class DefectEvent(BaseModel):
    id: str
    stream_id: str
    stream_name: str
    type: str
    group: str
    state: Literal["open", "closed"]
    start: float
    end: float | None
    started_at: str | None
    ended_at: str | None
    severity: Literal["warning", "critical"]
    details: dict[str, Any]
    evidence_url: str | None
    epoch: int | None


class Member(BaseModel):
    id: str
    ready: bool
    units: int
    load: float


class ClusterUnit(BaseModel):
    stream_id: str
    group: str
    owner: str | None
    epoch: int | None
    running: bool


class Cluster(BaseModel):
    members: list[Member]
    units: list[ClusterUnit]
    generation: int | None
