"""Defects through other encoders, containers and audio layouts than avmon's own clips.

One `avmon synth` clip (720p30, speech) with a black picture, a frozen picture, full
silence and one silent channel is decoded and re-encoded by FFmpeg's encoders (through
PyAV) into each variant below -- HEVC 10-bit, MPEG-2 with MP2, AC-3 5.1, VP9 and Opus,
ProRes with 24-bit PCM, 4:2:2 10-bit H.264, MPEG-4 part 2 with MP3 in AVI, mono
44.1 kHz AAC in MP4, full range H.264, the short GOPs and constant bit rates broadcast
feeds use, and interlaced (field) coding in H.264 and MPEG-2 -- and the real
``avmon check --json`` process analyses each.
Reported per variant: every injected defect's start/end error, and anything else raised.

    python bench/formats.py [--keep DIR] [VARIANT ...]

In the 5.1 variant only the front pair and the centre carry sound (surrounds and LFE
silent, as a stereo programme travels in a 5.1 service); the mono variant cannot carry
a silent channel.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INJECT = "black@4-7,freeze@10-13,silence@16-19,channel_silence@22-25"
X264 = {"preset": "veryfast"}
QUIET = "log-level=error"  # x265 prints its settings otherwise
CBR = {"b": "3M", "maxrate": "3M", "bufsize": "1M", "x264-params": "nal-hrd=cbr"}

# name: (container, extension, video codec, options, pixel format, audio codec, layout, rate)
VARIANTS: dict[str, tuple[str, str, str, dict[str, str], str, str, str, int]] = {
    "hevc10_opus_mkv": (
        "matroska", "mkv", "libx265",
        {"crf": "28", "preset": "ultrafast", "x265-params": QUIET},
        "yuv420p10le", "libopus", "stereo", 48000,
    ),
    "mpeg2_mp2_ts": ("mpegts", "ts", "mpeg2video", {"b": "8M"}, "yuv420p", "mp2", "stereo", 48000),
    "h264_ac3_5.1_ts": (
        "mpegts", "ts", "libx264", {"crf": "23", **X264}, "yuv420p", "ac3", "5.1", 48000,
    ),
    "vp9_opus_webm": (
        "webm", "webm", "libvpx-vp9",
        {"crf": "35", "b": "0", "deadline": "realtime", "cpu-used": "8"},
        "yuv420p", "libopus", "stereo", 48000,
    ),
    "prores_pcm24_mov": (
        "mov", "mov", "prores_ks", {"profile": "0"}, "yuv422p10le", "pcm_s24le", "stereo", 48000,
    ),
    "mpeg4_mp3_avi": (
        "avi", "avi", "mpeg4", {"q": "4"}, "yuv420p", "libmp3lame", "stereo", 44100,
    ),
    "h264_aac_mono44k_mp4": (
        "mp4", "mp4", "libx264", {"crf": "23", **X264}, "yuv420p", "aac", "mono", 44100,
    ),
    "h264_fullrange_ts": (
        "mpegts", "ts", "libx264", {"crf": "23", **X264}, "yuvj420p", "aac", "stereo", 48000,
    ),
    "h264_422p10_pcm_mov": (
        "mov", "mov", "libx264", {"crf": "23", **X264}, "yuv422p10le", "pcm_s16le", "stereo",
        48000,
    ),
    "h264_gop1s_ts": (
        "mpegts", "ts", "libx264", {"crf": "23", "g": "30", "sc_threshold": "0", **X264},
        "yuv420p", "aac", "stereo", 48000,
    ),
    "h264_cbr_gop1s_ts": (
        "mpegts", "ts", "libx264", {"g": "30", **CBR, **X264}, "yuv420p", "aac", "stereo", 48000,
    ),
    "hevc_gop1s_ts": (
        "mpegts", "ts", "libx265",
        {"crf": "28", "preset": "ultrafast", "x265-params": f"keyint=30:min-keyint=30:{QUIET}"},
        "yuv420p", "aac", "stereo", 48000,
    ),
    "mpeg2_gop15_6M_ts": (
        "mpegts", "ts", "mpeg2video", {"b": "6M", "g": "15"}, "yuv420p", "mp2", "stereo", 48000,
    ),
    # Field coding, as interlaced broadcast is sent (MBAFF / field pictures, TFF).
    "h264_interlaced_ts": (
        "mpegts", "ts", "libx264", {"crf": "23", "x264-params": "interlaced=1:tff=1", **X264},
        "yuv420p", "aac", "stereo", 48000,
    ),
    "mpeg2_interlaced_ts": (
        "mpegts", "ts", "mpeg2video", {"b": "8M", "g": "12", "flags": "+ildct+ilme", "top": "1"},
        "yuv420p", "mp2", "stereo", 48000,
    ),
}  # fmt: skip


def transcode(source: Path, out: Path, variant: tuple[Any, ...]) -> Path:
    fmt, _, vcodec, options, pix, acodec, layout, rate = variant
    with av.open(str(source)) as inp, av.open(str(out), "w", format=fmt) as o:
        vs = o.add_stream(vcodec, rate=30)
        assert isinstance(vs, av.VideoStream)
        vs.width, vs.height, vs.pix_fmt, vs.options = 1280, 720, pix, options
        if pix == "yuvj420p":
            vs.codec_context.color_range = 2  # full range, as JPEG-style cameras send
        aus = o.add_stream(acodec, rate=rate, layout=layout)
        assert isinstance(aus, av.AudioStream)
        resampler = av.AudioResampler(
            format=aus.codec_context.format.name, layout=layout, rate=rate
        )
        n = 0
        for decoded in inp.decode(video=0, audio=0):
            frame = decoded
            if isinstance(frame, av.VideoFrame):
                picture = frame.reformat(format=pix)
                picture.pts, picture.time_base = n, Fraction(1, 30)
                n += 1
                for packet in vs.encode(picture):
                    o.mux(packet)
                continue
            assert isinstance(frame, av.AudioFrame)
            if layout == "5.1":  # front pair as is, centre their mix, LFE and surrounds silent
                x = frame.to_ndarray()
                six = np.zeros((6, x.shape[1]), np.float32)
                six[0], six[1], six[2] = x[0], x[1], 0.5 * (x[0] + x[1])
                frame = av.AudioFrame.from_ndarray(six, format="fltp", layout="5.1")
                frame.sample_rate = 48000
            frame.pts = None
            for part in resampler.resample(frame):
                part.pts = None
                for packet in aus.encode(part):
                    o.mux(packet)
        for stream in (vs, aus):
            for packet in stream.encode(None):
                o.mux(packet)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the clips here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avmon-formats-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        source = root / "source.ts"
        if not source.exists():
            cmd = [sys.executable, "-m", "service.cli", "synth", str(source), "--duration", "30"]
            cmd += ["--size", "1280x720", "--audio", "speech", "--inject", INJECT]
            subprocess.run(cmd, check=True, cwd=ROOT)
        truth = json.loads(Path(f"{source}.json").read_text())["defects"]
        print("injected:", ", ".join(f"{d['type']} {d['start']:g}-{d['end']:g}" for d in truth))
        for name in args.variants:
            variant = VARIANTS[name]
            out = root / f"{name}.{variant[1]}"
            if not out.exists():  # written aside first: a failed encode leaves no clip
                part = transcode(source, out.with_suffix(f".part.{variant[1]}"), variant)
                part.rename(out)
            cmd = [sys.executable, "-m", "service.cli", "check", "--json", str(out)]
            run = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
            try:
                found = json.loads(run.stdout)["defects"]
            except (ValueError, KeyError):
                print(f"{name:22} avmon check failed: {run.stderr.strip()[-300:]}")
                continue
            print(f"{name:22} {_verdict(truth, found)}", flush=True)


def _verdict(truth: list[dict[str, Any]], found: list[dict[str, Any]]) -> str:
    parts, matched = [], set()
    for t in truth:
        hits = [
            (i, d)
            for i, d in enumerate(found)
            if d["type"] == t["type"] and d["start"] < t["end"] and (d["end"] or 1e9) > t["start"]
        ]
        if not hits:
            parts.append(f"{t['type']} MISSED")
            continue
        i, d = hits[0]
        matched.add(i)
        parts.append(f"{t['type']} {d['start'] - t['start']:+.2f}/{d['end'] - t['end']:+.2f}")
    extra = [
        f"{d['type']} {d['start']:.2f}-{d['end']:.2f}"
        for i, d in enumerate(found)
        if i not in matched
    ]
    return ", ".join(parts) + (f"; ALSO {', '.join(extra)}" if extra else "")


if __name__ == "__main__":
    main()
