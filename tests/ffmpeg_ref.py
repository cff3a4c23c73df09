"""FFmpeg's own detectors as a reference: blackdetect, freezedetect and silencedetect.

Runs libavfilter through PyAV's filter graph on a file (``buffer -> blackdetect ->
freezedetect -> buffersink`` for the picture, ``abuffer -> silencedetect -> abuffersink``
for the sound), reads the filters' verdicts from the output frames' metadata and puts
them on avmon's media timeline: seconds from the video stream's ``start_time`` (the
``origin`` of ``service.media.decoder.MediaReader``), so both sides can be compared
window by window.

What the filters report, and how it is turned into windows here:

- ``blackdetect`` sets ``lavfi.black_start`` on the first black frame and
  ``lavfi.black_end`` on the first non-black frame of *every* run; its ``d`` only gates
  the log line. Runs shorter than ``d`` are dropped here (``end - start >= d``, the same
  test FFmpeg applies before logging).
- ``freezedetect`` sets ``lavfi.freezedetect.freeze_start`` (the reference frame's time)
  once a frame is ``d`` after the reference, and ``freeze_end`` on the first changed
  frame. It measures all planes and does not care what the picture is: a frozen black
  picture is a freeze to FFmpeg, while avmon leaves it to the black detector.
- ``silencedetect`` sets ``lavfi.silence_start`` (dated back to the first silent sample)
  once ``d`` of silence has passed, and ``lavfi.silence_end`` at the first loud sample.

FFmpeg writes no end for a run still open at the end of the input (only a log line, for
some filters); such runs are closed here at the end of the input: the later of the last
video frame's end and the last audio sample's end, which is where avmon closes them.
FFmpeg formats times with ``%.6g`` (0.1 ms steps below 100 s): video times are snapped to
the frame they name, audio times are used as printed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import av.filter

# Metadata keys: (start key, end key) per window type.
KEYS = {
    "black": ("lavfi.black_start", "lavfi.black_end"),
    "freeze": ("lavfi.freezedetect.freeze_start", "lavfi.freezedetect.freeze_end"),
    "silence": ("lavfi.silence_start", "lavfi.silence_end"),
}


@dataclass(frozen=True, slots=True)
class Window:
    type: str
    start: float
    end: float
    at_eof: bool = False  # still open at the end of the input; closed there

    @property
    def duration(self) -> float:
        return self.end - self.start

    def __str__(self) -> str:
        eof = " (EOF)" if self.at_eof else ""
        return f"{self.type}[{self.start:.4f}, {self.end:.4f}]{eof}"


@dataclass
class Reference:
    """Everything FFmpeg's filters said about one file, on avmon's timeline."""

    path: str
    origin: float  # raw seconds subtracted from every FFmpeg time
    fps: float
    video_end: float  # end of the last video frame (its time + 1/fps)
    audio_end: float  # end of the last audio sample
    video_frames: int
    raw: dict[str, list[Window]] = field(default_factory=dict)  # every run, ungated

    @property
    def end(self) -> float:
        return max(self.video_end, self.audio_end)

    def windows(self, kind: str, d: float) -> list[Window]:
        """FFmpeg's ``kind`` windows that FFmpeg reports for minimum duration ``d``.

        For ``freeze``, freezes whose reference frame is black are left out: avmon
        reports a frozen black picture as black only (its documented policy).
        """
        runs = [w for w in self.raw[kind] if w.duration >= d - 1e-9]
        if kind == "freeze":
            black = self.raw["black"]
            runs = [w for w in runs if not any(b.start <= w.start < b.end for b in black)]
        return runs


class _Runs:
    """Turns start/end metadata of one window type into closed windows."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.open: float | None = None
        self.done: list[Window] = []

    def feed(self, meta: dict[str, str], when: Any) -> None:
        k_start, k_end = KEYS[self.kind]
        start, end = meta.get(k_start), meta.get(k_end)
        # A frame can carry both keys: an open run ending, or (freezedetect) a run whose
        # start is only reported on the frame that already ends it.
        if end is not None and self.open is not None:
            self._close(when(end))
            end = None
        if start is not None:
            assert self.open is None, f"{self.kind}: start {start} while a run is open"
            self.open = when(start)
        if end is not None:
            assert self.open is not None, f"{self.kind}: end {end} without a start"
            self._close(when(end))

    def _close(self, t: float, at_eof: bool = False) -> None:
        assert self.open is not None
        self.done.append(Window(self.kind, self.open, t, at_eof))
        self.open = None

    def finish(self, t_end: float) -> list[Window]:
        if self.open is not None:
            self._close(max(t_end, self.open), at_eof=True)
        return self.done


def _drain(sink: Any) -> Iterator[Any]:
    while True:
        try:
            yield sink.pull()
        except (av.BlockingIOError, av.EOFError):
            return


def run_reference(path: str | Path, d: float = 2.0) -> Reference:
    """Decode ``path`` once and run FFmpeg's three detectors with minimum duration ``d``."""
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        as_ = container.streams.audio[0] if container.streams.audio else None
        vs.thread_type = "AUTO"
        vs.codec_context.options = {"enable_er": "1"}  # decode exactly as MediaReader does
        # avmon's origin: the video stream's start_time (MediaReader._stream_start).
        if vs.start_time is not None:
            origin = float(vs.start_time * vs.time_base)
        elif container.start_time is not None:
            origin = container.start_time / 1_000_000
        else:
            origin = 0.0
        rate = vs.average_rate or vs.guessed_rate
        fps = float(rate) if rate else 25.0
        vtb = vs.time_base

        vgraph = av.filter.Graph()
        vsink = vgraph.add("buffersink")
        vgraph.link_nodes(
            vgraph.add_buffer(template=vs),
            vgraph.add("blackdetect", d=str(d)),
            vgraph.add("freezedetect", d=str(d)),
            vsink,
        ).configure()
        agraph: Any = None
        asink: Any = None

        pts_seen: list[float] = []  # every video frame's time on avmon's timeline

        def video_time(text: str) -> float:
            """FFmpeg's ``%.6g`` time snapped to the video frame it names."""
            t = float(text) - origin
            i = bisect.bisect_left(pts_seen, t)
            near = min(pts_seen[max(i - 1, 0) : i + 1], key=lambda p: abs(p - t))
            assert abs(near - t) < 0.25 / fps, f"FFmpeg time {text} names no frame"
            return near

        def audio_time(text: str) -> float:
            return float(text) - origin

        runs = {k: _Runs(k) for k in KEYS}
        video_last = audio_end = None
        frames = 0

        def take_video(out: Any) -> None:
            meta = dict(out.metadata)
            if meta:
                runs["black"].feed(meta, video_time)
                runs["freeze"].feed(meta, video_time)

        def take_audio(out: Any) -> None:
            meta = dict(out.metadata)
            if meta:
                runs["silence"].feed(meta, audio_time)

        streams = [vs] + ([as_] if as_ is not None else [])
        for packet in container.demux(streams):
            for frame in packet.decode():
                if packet.stream is vs:
                    assert frame.pts is not None, "video frame without pts"
                    t = float(frame.pts * vtb) - origin
                    pts_seen.insert(bisect.bisect(pts_seen, t), t)
                    video_last = t if video_last is None else max(video_last, t)
                    frames += 1
                    vgraph.push(frame)
                    for out in _drain(vsink):
                        take_video(out)
                else:
                    assert frame.pts is not None, "audio frame without pts"
                    if agraph is None:
                        agraph = av.filter.Graph()
                        asink = agraph.add("abuffersink")
                        agraph.link_nodes(
                            agraph.add_abuffer(
                                sample_rate=frame.sample_rate,
                                format=frame.format.name,
                                layout=frame.layout.name,
                                time_base=as_.time_base,
                            ),
                            agraph.add("silencedetect", d=str(d)),
                            asink,
                        ).configure()
                    end = float(frame.pts * as_.time_base) + frame.samples / frame.sample_rate
                    audio_end = end if audio_end is None else max(audio_end, end)
                    agraph.push(frame)
                    for out in _drain(asink):
                        take_audio(out)
        vgraph.push(None)
        for out in _drain(vsink):
            take_video(out)
        if agraph is not None:
            agraph.push(None)
            for out in _drain(asink):
                take_audio(out)

    assert video_last is not None, f"{path}: no video frames decoded"
    video_end = video_last + 1.0 / fps
    audio_end_t = audio_end - origin if audio_end is not None else video_end
    t_end = max(video_end, audio_end_t)
    return Reference(
        path=str(path),
        origin=origin,
        fps=fps,
        video_end=video_end,
        audio_end=audio_end_t,
        video_frames=frames,
        raw={k: r.finish(t_end) for k, r in runs.items()},
    )


def ebur128(samples: Any, rate: int, block: int = 1024, layout: str = "stereo") -> dict[str, float]:
    """FFmpeg's ``ebur128=peak=true:metadata=1`` over float samples (channels, n) in the
    named channel ``layout`` (stereo unless said): the
    final integrated loudness ``I`` and loudness range ``LRA`` (LU), and the highest
    true peak ``true_peak`` (dBTP), as its frame metadata says at the end."""
    import math
    from fractions import Fraction

    import numpy as np

    # PyAV 18 fails to fill a planar frame of 8 channels (7.1): those go in interleaved.
    fmt = "fltp" if samples.shape[0] < 8 else "flt"
    graph = av.filter.Graph()
    src = graph.add_abuffer(
        sample_rate=rate, format=fmt, layout=layout, time_base=Fraction(1, rate)
    )
    meter = graph.add("ebur128", "peak=true:metadata=1")
    sink = graph.add("abuffersink")
    src.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    last: dict[str, str] = {}
    peak = 0.0

    def drain() -> None:
        nonlocal last, peak
        while True:
            try:
                out = sink.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            if out.metadata:
                last = dict(out.metadata)
                peak = max(peak, float(last.get("lavfi.r128.true_peak", 0.0)))

    for i in range(0, samples.shape[1], block):
        chunk = np.ascontiguousarray(samples[:, i : i + block], dtype=np.float32)
        if fmt == "flt":
            chunk = np.ascontiguousarray(chunk.T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        src.push(frame)
        drain()
    src.push(None)
    drain()
    return {
        "I": float(last["lavfi.r128.I"]),
        "LRA": float(last["lavfi.r128.LRA"]),
        "true_peak": 20 * math.log10(peak) if peak > 0 else -math.inf,
    }
