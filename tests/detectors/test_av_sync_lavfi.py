"""A/V sync on a line-up made by libavfilter, not by avmon: a grey picture (``color``)
with a white flash (``drawbox``) of 1-3 frames every second, and a 1 kHz beep
(``aevalsrc``, sample-exact) a set time after each flash, encoded by x264 and FFmpeg's AAC
encoder into MPEG-TS, analysed by ``check``. A flash longer than ``max_flash_s`` is a
bright scene, not a flash: nothing is measured from it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import pytest

from service.pipeline.check import check
from tests.lavfi_clips import unforced

FPS, SECONDS = 25, 12


def _pull(sink: av.filter.context.FilterContext) -> list[av.frame.Frame]:
    out = []
    while True:
        try:
            out.append(sink.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return out


def _graph(*chain: tuple[str, str]) -> list[av.frame.Frame]:
    graph = av.filter.Graph()
    nodes = [graph.add(name, args) for name, args in chain]
    for a, b in itertools.pairwise(nodes):
        a.link_to(b)
    graph.configure()
    return _pull(nodes[-1])


def lineup(
    out: Path,
    flash_frames: int,
    offset_s: float,
    beep_s: float = 0.04,
    x264_params: str = "",
    start_s: int = 1,
    seconds: int = SECONDS,
    phase: int = 0,
    background: tuple[str, str] = ("color", "c=0x404040:"),
) -> Path:
    """The line-up clip, flashing from ``start_s``, ``phase`` pictures into each second,
    over ``background`` (a lavfi source and its first options); ``x264_params``: the
    encoder's GOP, if not its own."""
    flash = f"gte(n,{FPS * start_s})*lt(mod(n-{phase},{FPS}),{flash_frames})"
    pictures = _graph(
        (background[0], f"{background[1]}s=640x360:r={FPS}:d={seconds}"),
        ("drawbox", f"x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='{flash}'"),
        ("format", "yuv420p"),
        ("buffersink", ""),
    )
    beep = f"gte(t,{start_s})*between(mod(t-{offset_s + phase / FPS},1),0,{beep_s})"
    sound = _graph(
        ("aevalsrc", f"exprs='0.3*sin(2*PI*1000*t)*{beep}':s=48000:d={seconds}:n=1024"),
        ("aformat", "sample_fmts=fltp:channel_layouts=stereo"),
        ("abuffersink", ""),
    )
    with av.open(str(out), "w", format="mpegts") as container:
        video = container.add_stream("libx264", rate=FPS)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        video.options = {"crf": "20", "preset": "veryfast"}
        if x264_params:
            video.options = {**video.options, "x264-params": x264_params}
        audio = container.add_stream("aac", rate=48000)
        assert isinstance(audio, av.AudioStream)
        audio.layout = "stereo"
        # In time order, as a live encoder muxes them: one stream after the other left
        # the sound ~2 s behind the pictures in the file.
        timed = [(i / FPS, 0, f) for i, f in enumerate(pictures)]
        timed += [(i * 1024 / 48000, 1, f) for i, f in enumerate(sound)]
        for _, kind, frame in sorted(timed, key=lambda x: x[:2]):
            stream = (video, audio)[kind]
            frame.pts = None  # the encoder counts them
            if isinstance(frame, av.VideoFrame):  # lavfi's I type would be forced
                unforced(frame)
            for packet in stream.encode(frame):  # type: ignore[arg-type]
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return out


@pytest.mark.parametrize("flash_frames", [1, 2, 3])
def test_a_late_beep_is_raised_with_its_offset(tmp_path: Path, flash_frames: int) -> None:
    report = check(str(lineup(tmp_path / "l.ts", flash_frames, 0.2)), detectors=["av_sync"])
    assert len(report.defects) == 1, report.defects
    defect = report.defects[0]
    assert defect.start == pytest.approx(1.0, abs=1 / FPS)
    # The AAC encoder's frames (21 ms) and one picture (40 ms) bound the measurement.
    assert defect.details["offset_ms"] == pytest.approx(200.0, abs=1000 / FPS)


@pytest.mark.parametrize("flash_frames", [1, 3])
def test_a_beep_on_the_flash_raises_nothing(tmp_path: Path, flash_frames: int) -> None:
    clip = lineup(tmp_path / "l.ts", flash_frames, 0.0)
    assert check(str(clip), detectors=["av_sync"]).defects == []


def test_a_bright_run_longer_than_a_flash_measures_nothing(tmp_path: Path) -> None:
    clip = lineup(tmp_path / "l.ts", 4, 0.2)  # 4 pictures at 25 fps: 0.12 s
    assert check(str(clip), detectors=["av_sync"]).defects == []
    allowed = {"av_sync": {"max_flash_s": 0.2}}
    assert len(check(str(clip), detectors=["av_sync"], thresholds=allowed).defects) == 1
