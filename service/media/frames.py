"""The frames detectors see: plain data, no PyAV objects leak past the media layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(slots=True)
class VideoFrame:
    """One decoded picture.

    ``luma`` is a zero-copy view of the decoder's luma plane (uint8, or uint16 for
    >8-bit formats), shape (height, width); it is only valid while the frame is in use,
    so a detector that keeps pixels must copy the (small) part it keeps.
    """

    t: float  # media seconds from the stream's first frame
    luma: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]
    black_level: int  # code value of nominal black (16 limited range, 0 full range)
    white_level: int  # code value of nominal white (235 / 255, scaled for bit depth)
    bit_depth: int
    corrupt: bool  # the decoder saw errors in this frame
    key: bool
    index: int  # 0-based count of decoded video frames

    @property
    def width(self) -> int:
        return int(self.luma.shape[1])

    @property
    def height(self) -> int:
        return int(self.luma.shape[0])


@dataclass(slots=True)
class AudioFrame:
    """A block of decoded audio: float32 samples shaped (channels, samples)."""

    t: float  # media time of the first sample
    samples: npt.NDArray[np.float32]
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def end(self) -> float:
        return self.t + self.duration


@dataclass(slots=True)
class DecodeError:
    """The decoder rejected a packet (corrupt payload); reported as block corruption."""

    t: float
    kind: str  # "video" | "audio"
    message: str


@dataclass(slots=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float


@dataclass(slots=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(slots=True)
class StreamInfo:
    video: VideoInfo | None
    audio: AudioInfo | None
    live: bool
