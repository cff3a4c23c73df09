"""The media reader on real encoded media: zero-copy luma, float32 audio, one timeline
from 0, streams without audio or video, splices (timestamp jump + resolution change),
and >8-bit video."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from service.media.decoder import MediaReader, _luma_view
from service.media.frames import AudioFrame, VideoFrame
from tests.conftest import ClipFactory, run_avmon


def _remux(src: Path, dst: Path, keep: str) -> None:
    """Copy one kind of stream ("video" or "audio") into a new TS, packets untouched."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mpegts") as out:
        stream = inp.streams.video[0] if keep == "video" else inp.streams.audio[0]
        ostream = out.add_stream_from_template(stream)
        for pkt in inp.demux(stream):
            if pkt.dts is None:
                continue
            pkt.stream = ostream
            out.mux(pkt)


def _check(path: Path) -> dict:
    proc = run_avmon("check", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_luma_is_a_zero_copy_view_of_the_decoded_plane(make_clip: ClipFactory) -> None:
    path, _ = make_clip("", duration=4.0)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        luma, _, black, white, bits = _luma_view(frame)
        plane = frame.planes[0]
        assert luma.ctypes.data == plane.buffer_ptr  # no copy: it is the plane itself
        assert luma.shape == (360, 640) and luma.dtype == np.uint8
        assert luma.strides[0] == plane.line_size
        assert np.array_equal(luma, frame.to_ndarray(format="yuv420p")[:360])
        assert (black, white, bits) == (16, 235, 8)


def test_frames_share_one_timeline_from_zero(make_clip: ClipFactory) -> None:
    path, _ = make_clip("", duration=4.0)
    with MediaReader(str(path)) as reader:
        items = list(reader.frames())
    video = [f for f in items if isinstance(f, VideoFrame)]
    audio = [f for f in items if isinstance(f, AudioFrame)]
    assert video[0].t == 0.0
    assert np.allclose(np.diff([f.t for f in video]), 1 / 30, atol=1e-6)
    assert len(video) == 120
    assert all(a.samples.dtype == np.float32 and a.samples.shape[0] == 2 for a in audio)
    # Audio is contiguous and starts within one AAC frame of the video.
    assert abs(audio[0].t) < 1024 / 48000 + 1e-6
    gaps = [b.t - a.end for a, b in itertools.pairwise(audio)]
    assert max(abs(g) for g in gaps) < 1e-6


def test_video_only_and_audio_only_streams(make_clip: ClipFactory, tmp_path: Path) -> None:
    path, _ = make_clip("black@2-5,silence@6-9", duration=12.0)
    video_only, audio_only = tmp_path / "v.ts", tmp_path / "a.ts"
    _remux(path, video_only, "video")
    _remux(path, audio_only, "audio")
    v = _check(video_only)
    assert v["audio"] is None and v["video"]["frames"] == 360
    assert [(d["type"], d["start"], d["end"]) for d in v["defects"]] == [("black", 2.0, 5.0)]
    a = _check(audio_only)
    assert a["video"] is None and a["audio"]["channels"] == 2
    assert [d["type"] for d in a["defects"]] == ["silence"]
    silence = a["defects"][0]
    # Audio-only: times count from the first audio frame (AAC priming, ~21 ms earlier).
    assert abs(silence["start"] - 6.0) <= 0.05 and abs(silence["end"] - 9.0) <= 0.05


def test_splice_with_timestamp_reset_and_new_resolution(
    make_clip: ClipFactory, tmp_path: Path
) -> None:
    a, _ = make_clip("black@3-6", duration=10.0)
    b, _ = make_clip("freeze@2-5,silence@6-9", duration=10.0, size="1280x720", seed=3)
    spliced = tmp_path / "spliced.ts"
    spliced.write_bytes(a.read_bytes() + b.read_bytes())  # timestamps restart mid-file
    doc = _check(spliced)
    assert doc["video"]["frames"] == 600
    assert abs(doc["duration"] - 20.0) < 0.1
    found = [(d["type"], d["start"], d["end"]) for d in doc["defects"]]
    assert [f[0] for f in found] == ["black", "freeze", "silence"], found
    for (_, start, end), (want_start, want_end, tol) in zip(
        found, [(3, 6, 0.1), (12, 15, 0.1), (16, 19, 0.05)], strict=True
    ):
        assert abs(start - want_start) <= tol and abs(end - want_end) <= tol, found


def test_ten_bit_video_uses_ten_bit_levels(tmp_path: Path) -> None:
    path = tmp_path / "ten.mkv"
    w, h, fps = 320, 240, 25
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p10le"
        for i in range(5 * fps):
            yuv = np.full((h * 3 // 2, w), 512, np.uint16)
            if i < 3 * fps:
                yuv[:h] = 64  # 10-bit black (16 << 2)
            else:
                yuv[:h] = rng.integers(100, 900, (h, w), dtype=np.uint16)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p10le")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    with MediaReader(str(path)) as reader:
        first = next(f for f in reader.frames() if isinstance(f, VideoFrame))
        assert first.bit_depth == 10 and first.luma.dtype == np.uint16
        assert (first.black_level, first.white_level) == (64, 940)
    doc = _check(path)
    assert [(d["type"], d["start"], d["end"]) for d in doc["defects"]] == [("black", 0.0, 3.0)]


def _restamp_audio(src: Path, dst: Path, stretch: float) -> None:
    """Copy a TS, scaling the audio timestamps (not the samples) by ``stretch``."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mpegts") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        vout, aout = out.add_stream_from_template(vin), out.add_stream_from_template(ain)
        first: int | None = None
        for pkt in inp.demux(vin, ain):
            if pkt.dts is None:
                continue
            if pkt.stream is ain:
                first = pkt.pts if first is None else first
                pkt.pts = first + round((pkt.pts - first) * stretch)
                pkt.dts = pkt.pts
                pkt.stream = aout
            else:
                pkt.stream = vout
            out.mux(pkt)


def test_audio_timestamps_drifting_from_their_samples(
    make_clip: ClipFactory, tmp_path: Path
) -> None:
    path, _ = make_clip("", duration=20.0)
    drifting = tmp_path / "drift.ts"
    # Timestamps 1% fast: after t seconds they are 10*t ms ahead of the samples, so a
    # player on the audio sample clock hears audio ever earlier (negative offset).
    _restamp_audio(path, drifting, 1.01)
    syncs = [d for d in _check(drifting)["defects"] if d["type"] == "av_sync"]
    assert len(syncs) == 1, syncs
    d = syncs[0]
    assert d["details"]["method"] == "timestamps"
    # Crosses the 45 ms "audio early" limit ~4.5 s in, and stays out to the end.
    assert 4.0 <= d["start"] <= 5.0 and d["end"] >= 19.9
    assert d["details"]["offset_ms"] <= -45
    # Unaltered timestamps: no drift.
    assert not [x for x in _check(path)["defects"] if x["type"] == "av_sync"]
