"""Clips made by FFmpeg's own sources, not by ``avmon synth``: libavfilter's test patterns
(``testsrc2``, ``smptebars``, ``zoneplate``...) pulled through PyAV's filter graph and
encoded clean with x264 (CRF 20), optionally with a segment of real H.264 blocking: the
frames of that segment go through x264 at QP 51 with the deblocking filter off and are
decoded back before the clean encode, as a starved encoder upstream would leave them.

Used by the tests (clips made at test time) and by ``bench/patterns.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

SOURCES = (
    "testsrc",
    "testsrc2",
    "smptebars",
    "smptehdbars",
    "rgbtestsrc",
    "yuvtestsrc",
    "mandelbrot",
    "cellauto",
    "life",
    "zoneplate",
)
RATE = 30


def source_frames(source: str, size: str, count: int) -> Iterator[av.VideoFrame]:
    """``count`` yuv420p frames of a lavfi source at ``size``, 30 fps."""
    graph = av.filter.Graph()
    args = f"size={size}:rate={RATE}"
    if source == "zoneplate":
        args += ":kt2=2:kx2=256:ky2=256:kt=3"  # a moving plate; the default one is still
    src = graph.add(source, args)
    scale = graph.add("scale", size.replace("x", ":"))  # cellauto/life ignore some sizes
    fmt = graph.add("format", "yuv420p")
    sink = graph.add("buffersink")
    src.link_to(scale)
    scale.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    for _ in range(count):
        frame = sink.pull()
        assert isinstance(frame, av.VideoFrame)
        yield frame


def _encoder(width: int, height: int, options: dict[str, str]) -> av.VideoCodecContext:
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, RATE)
    ctx.framerate = Fraction(RATE, 1)
    ctx.options = options
    return ctx


class Blocker:
    """Frames through x264 at QP 51, deblocking off, and back: real H.264 blocking."""

    def __init__(self, width: int, height: int) -> None:
        self.enc = _encoder(
            width,
            height,
            {"preset": "ultrafast", "tune": "zerolatency", "x264-params": "qp=51:no-deblock=1"},
        )
        self.dec = av.CodecContext.create("h264", "r")
        self.n = 0

    def __call__(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        frame.pts, frame.time_base = self.n, Fraction(1, RATE)
        self.n += 1
        out: list[av.VideoFrame] = []
        for packet in self.enc.encode(frame):
            out += [f for f in self.dec.decode(packet) if isinstance(f, av.VideoFrame)]
        return out


def make_clip(
    out: Path,
    source: str,
    size: str = "640x360",
    duration: float = 60.0,
    crf: int = 20,
    blocky: tuple[float, float] | None = None,
    tone_hz: float | None = None,
) -> Path:
    """An MPEG-TS clip of ``source``; ``blocky`` = (start, end) seconds of QP-51 frames;
    ``tone_hz`` adds a stereo AAC sine at -20 dBFS (the programme a line-up carries)."""
    width, height = (int(v) for v in size.split("x"))
    count = round(duration * RATE)
    blocker = Blocker(width, height) if blocky else None
    with av.open(str(out), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=RATE)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        tone = _Tone(container, tone_hz) if tone_hz else None
        for i, made in enumerate(source_frames(source, size, count)):
            if tone is not None:
                tone.until((i + 1) / RATE)
            t = i / RATE
            picture = made
            if blocker is not None and blocky is not None and blocky[0] <= t < blocky[1]:
                decoded = blocker(made)
                if not decoded:  # zerolatency: one out per frame in; never expected
                    continue
                picture = decoded[-1]
            frame = picture.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if tone is not None:
            tone.close()
    return out


class _Tone:
    """A stereo AAC sine muxed alongside the video, encoded up to a given time."""

    RATE, BLOCK = 48_000, 1024

    def __init__(self, container: av.container.OutputContainer, hz: float) -> None:
        self.container, self.hz, self.n = container, hz, 0
        stream = container.add_stream("aac", rate=self.RATE)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "stereo"
        self.stream = stream

    def until(self, t: float) -> None:
        while self.n < t * self.RATE:
            k = np.arange(self.n, self.n + self.BLOCK)
            wave = (0.1 * np.sin(2 * np.pi * self.hz * k / self.RATE)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(
                np.stack([wave, wave]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = self.RATE, self.n
            frame.time_base = Fraction(1, self.RATE)
            self.n += self.BLOCK
            for packet in self.stream.encode(frame):
                self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
