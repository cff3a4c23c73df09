"""The frames detectors see: plain data, no PyAV objects leak past the media layer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Pixels = npt.NDArray[Any]  # uint8, or uint16 for > 8-bit formats

# About this many luma samples estimate frame-level statistics (black ratio, mean
# absolute difference) to well under 1%; a 1080p frame has 2 million. (Freeze re-measures
# frames near its threshold on every pixel.)
GRID_SAMPLES = 16_384


def sample_step(height: int, width: int) -> int:
    return max(1, round(math.sqrt(height * width / GRID_SAMPLES)))


@dataclass(slots=True)
class VideoFrame:
    """One decoded picture.

    ``luma`` is a zero-copy view of the decoder's luma plane (uint8, or uint16 for
    >8-bit formats), shape (height, width); it is only valid while the frame is in use,
    so a detector that keeps pixels must copy the (small) part it keeps.
    """

    t: float  # media seconds from the stream's first frame
    luma: Pixels
    black_level: int  # code value of nominal black (16 limited range, 0 full range)
    white_level: int  # code value of nominal white (235 / 255, scaled for bit depth)
    bit_depth: int
    corrupt: bool  # the decoder saw errors in this frame
    key: bool
    index: int  # 0-based count of decoded video frames
    # The stream's pictures it stands for: itself and the non-reference ones the decoder
    # dropped just before it (service.media.decode_frames).
    pictures: int = 1
    chroma: tuple[Pixels, Pixels] | None = None  # zero-copy U and V planes (planar YUV)
    # Wall clock when the reader had it (a live source: its packet read; a paced file:
    # released): live dating uses this, not when the analyser got to it, which a starved
    # machine delays (0: not stamped).
    arrived: float = 0.0
    _grid: Pixels | None = field(default=None, repr=False)
    _chroma_grids: tuple[Pixels, Pixels] | None = field(default=None, repr=False)
    _dark: tuple[int, int] | None = field(default=None, repr=False)  # (threshold, count)

    def grid(self) -> Pixels:
        """A regular grid of luma samples (~16k), copied once and shared by detectors."""
        if self._grid is None:
            step = sample_step(self.height, self.width)
            # Offset by half a step so the grid does not sit on block or picture edges.
            self._grid = np.ascontiguousarray(self.luma[step // 2 :: step, step // 2 :: step])
        return self._grid

    def dark_samples(self, threshold: int) -> int:
        """How many grid samples are at or below ``threshold`` (black and freeze both ask,
        at the same threshold by default: counted once)."""
        dark = self._dark
        if dark is None or dark[0] != threshold:
            count = int(np.count_nonzero(self.grid() <= threshold))
            dark = self._dark = (threshold, count)
        return dark[1]

    def chroma_grids(self) -> tuple[Pixels, Pixels] | None:
        """U and V sampled at about the grid's positions (copied once), if known."""
        if self.chroma is None:
            return None
        if self._chroma_grids is None:
            u, v = self.chroma
            step = max(1, sample_step(self.height, self.width) * u.shape[0] // self.height)
            off = step // 2
            self._chroma_grids = (
                np.ascontiguousarray(u[off::step, off::step]),
                np.ascontiguousarray(v[off::step, off::step]),
            )
        return self._chroma_grids

    @property
    def nbytes(self) -> int:
        """What holding the frame keeps alive: its decoded planes."""
        chroma = self.chroma
        return self.luma.nbytes + (chroma[0].nbytes + chroma[1].nbytes if chroma else 0)

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
    # FFmpeg's channel names in order ("FL", "FR", "FC", "LFE", ...), when the decoder
    # knows the layout: loudness weights channels by name, channel_silence finds the LFE.
    layout: tuple[str, ...] | None = None
    arrived: float = 0.0  # as VideoFrame.arrived
    _magnitude: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    _peak: npt.NDArray[np.float32] | None = field(default=None, repr=False)

    def magnitude(self) -> npt.NDArray[np.float32]:
        """|samples|, computed once and shared by detectors."""
        if self._magnitude is None:
            self._magnitude = np.abs(self.samples)
        return self._magnitude

    def peak(self) -> npt.NDArray[np.float32]:
        """Per sample position, the largest magnitude over channels."""
        if self._peak is None:
            self._peak = self.magnitude().max(axis=0)
        return self._peak

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def lfe(self) -> int | None:
        """The low-frequency effects channel's index (5.1, 7.1...), if there is one."""
        layout = self.layout
        return layout.index("LFE") if layout is not None and "LFE" in layout else None

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def end(self) -> float:
        return self.t + self.duration


@dataclass(slots=True)
class Gap:
    """No media reached the stream before media time ``t``, after the input before it:
    the source was lost and read again (a reconnect). Conditions seen before it are not
    known to have lasted through it."""

    t: float


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
