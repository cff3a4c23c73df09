"""Clips made by GStreamer's encoders -- code other than FFmpeg's -- through the system
Python's ``gi`` (python3-gi, the one the RTSP test server runs on): raw pictures written
by PyAV go in through ``rawvideoparse``, or a ``videotestsrc`` pattern is encoded."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import av

SYSTEM_PYTHON = "/usr/bin/python3"

# name: (GStreamer encoder, parser, container)
VIDEO = {
    "openh264 defaults": ("openh264enc", "h264parse", "mpegtsmux"),
    "openh264 1.5M": ("openh264enc bitrate=1500000 gop-size=60", "h264parse", "mpegtsmux"),
    "vp8 1.5M": (
        "vp8enc target-bitrate=1500000 keyframe-max-dist=60 deadline=1", "", "matroskamux"
    ),
    "x265 1.5M": ("x265enc bitrate=1500 key-int-max=60", "h265parse", "mpegtsmux"),
    "mpeg2 4M": ("mpeg2enc format=3 constraints=false bitrate=4000", "mpegvideoparse", "mpegtsmux"),
    "theora 1.5M": ("theoraenc bitrate=1500 keyframe-force=60", "", "matroskamux"),
}  # fmt: skip

# Run by the system Python: argv[1] = the pipeline.
_RUN = """
import sys, gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
p = Gst.parse_launch(sys.argv[1])
p.set_state(Gst.State.PLAYING)
ends = Gst.MessageType.EOS | Gst.MessageType.ERROR
msg = p.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, ends)
p.set_state(Gst.State.NULL)
if msg.type == Gst.MessageType.ERROR:
    sys.exit(str(msg.parse_error()[0]))
"""


def run(description: str) -> None:
    subprocess.run([SYSTEM_PYTHON, "-c", _RUN, description], check=True, capture_output=True)


def encode(encoder: str, source: str, out: Path, tone: bool = False) -> Path:
    """``source`` (a GStreamer source description ending in raw video) through
    ``encoder`` (a key of VIDEO); ``tone``: a -20 dBFS 1 kHz stereo tone alongside, 20 s.
    Returns the file (its suffix set by the container)."""
    enc, parse, mux = VIDEO[encoder]
    out = out.with_name(out.name + (".mkv" if mux == "matroskamux" else ".ts"))
    video = f"{source} ! {enc} " + (f"! {parse} " if parse else "") + "! queue ! mux. "
    sound = ""
    if tone:
        aenc = "opusenc" if mux == "matroskamux" else "voaacenc bitrate=128000 ! aacparse"
        sound = (
            "audiotestsrc wave=sine freq=1000 volume=0.1 num-buffers=938 samplesperbuffer=1024 "
            f"! audio/x-raw,rate=48000,channels=2 ! audioconvert ! {aenc} ! queue ! mux. "
        )
    run(f"{video}{sound}{mux} name=mux ! filesink location={out}")
    return out


def raw_source(frames: Iterable[av.VideoFrame], raw: Path, width: int, height: int) -> str:
    """Write ``frames`` as raw I420 to ``raw``; the GStreamer source that reads them back
    at 30 fps."""
    with raw.open("wb") as f:
        for frame in frames:
            f.write(frame.reformat(format="yuv420p").to_ndarray().tobytes())
    return (
        f"filesrc location={raw} ! rawvideoparse width={width} height={height} format=i420 "
        "framerate=30/1"
    )


def held(frames: Iterable[av.VideoFrame], start: float, end: float) -> Iterator[av.VideoFrame]:
    """``frames`` at 30 fps with the picture held (frozen) from ``start`` to ``end`` s."""
    picture = None
    for i, made in enumerate(frames):
        if start <= i / 30 < end:
            picture = picture if picture is not None else made
            yield picture
        else:
            yield made
