"""`avmon check`: analyse a finite source (or the first seconds of a live one) at full speed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.detectors import registry
from service.media.decoder import MediaItem, MediaReader
from service.media.frames import StreamInfo, VideoFrame
from service.media.udp_drops import kernel_drops, udp_port
from service.pipeline.analyzer import Analyzer
from service.pipeline.lifecycle import Defect

Progress = Callable[[float, float | None], None]  # (media seconds done, total or None)

# Pictures decoded before any of them is analysed. Analysed right after its own decode, a
# picture finds the detectors' state (their arrays, numpy's code, the interpreter's)
# evicted by the decoder; a batch keeps it warm across pictures: at 1080p analysis
# 0.71-0.83x the CPU a picture with 8 (`bench/analysis_batch.py`, two runs; within the
# noise at 720p). A file checked at full speed has no latency to lose; each
# picture held keeps its decoded planes (the decoder's pool grows by them): bounded in
# bytes too (a 4K picture is 12 MB), and in items (audio alone has no pictures).
# And, decoding reference pictures only (8 span ~0.5 s), in media time: a detector's ask
# for every picture reaches the decoder one batch late at most.
BATCH_PICTURES = 8
BATCH_BYTES = 32 << 20
BATCH_ITEMS = 64
BATCH_S = 0.25


@dataclass
class Report:
    source: str
    info: StreamInfo
    duration: float
    video_frames: int
    defects: list[Defect] = field(default_factory=list)
    decode_errors: int = 0
    ended_by: str | None = None
    udp_drops: int = 0  # datagrams the kernel dropped (udp:// and rtp:// sources)
    detector_seconds: dict[str, float] = field(default_factory=dict)
    # Detectors that raised on some input: (how many inputs, the first error).
    detector_errors: dict[str, tuple[int, str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        v, a = self.info.video, self.info.audio
        return {
            "source": self.source,
            "duration": round(self.duration, 3),
            "video": None
            if v is None
            else {
                "codec": v.codec,
                "width": v.width,
                "height": v.height,
                "fps": v.fps,
                "frames": self.video_frames,
            },
            "audio": None
            if a is None
            else {"codec": a.codec, "sample_rate": a.sample_rate, "channels": a.channels},
            "defects": [d.as_dict() for d in self.defects],
        }


def check(
    source: str,
    detectors: Iterable[str] | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    duration: float | None = None,
    progress: Progress | None = None,
    threads: str = "AUTO",
    reference_only: bool = False,
) -> Report:
    dets = registry.build(detectors, thresholds)
    analyzer = Analyzer(dets)
    with MediaReader(
        source,
        threads=threads,
        reference_only=reference_only,
        want_video=analyzer.wants_video,
        want_audio=analyzer.wants_audio,
    ) as reader:
        total = reader.container.duration / 1_000_000 if reader.container.duration else None
        if duration is not None:
            total = min(total, duration) if total else duration
        defects: list[Defect] = []
        next_progress = 0.0

        def analyse(batch: list[MediaItem]) -> None:
            nonlocal next_progress
            for item in batch:
                for ev in analyzer.feed(item):
                    if ev.kind == "open":
                        defects.append(ev.defect)
            if progress is not None and analyzer.t_end >= next_progress:
                progress(analyzer.t_end, total)
                next_progress = analyzer.t_end + 0.5

        batch: list[MediaItem] = []
        pictures = held = 0
        since = 0.0  # media time of the batch's first picture
        for item in reader.frames():
            if duration is not None and item.t >= duration:
                # Audio runs a little ahead of video in the mux: stop on the clock that
                # counts frames (video when there is any), drop the rest past the end.
                if isinstance(item, VideoFrame) or not analyzer.wants_video:
                    break
                continue
            batch.append(item)
            if isinstance(item, VideoFrame):
                if reference_only:
                    reader.decode_every_frame(item.t < analyzer.every_frame_until())
                since = item.t if not pictures else since
                pictures, held = pictures + 1, held + item.nbytes
            if (
                pictures >= BATCH_PICTURES
                or held >= BATCH_BYTES
                or len(batch) >= BATCH_ITEMS
                or (reference_only and pictures and item.t - since >= BATCH_S)
            ):
                analyse(batch)
                batch, pictures, held = [], 0, 0
        analyse(batch)
        for ev in analyzer.finish():
            if ev.kind == "open":
                defects.append(ev.defect)
        if progress is not None:
            progress(analyzer.t_end, analyzer.t_end)
        defects.sort(key=lambda d: (d.start, d.type))
        port = udp_port(source)
        drops = kernel_drops(port) if port is not None else None  # socket still open here
        return Report(
            source=source,
            info=reader.info,
            duration=analyzer.t_end,
            video_frames=reader.video_frames,
            defects=defects,
            decode_errors=reader.decode_errors,
            ended_by=reader.ended_by,
            udp_drops=drops or 0,
            detector_seconds=analyzer.detector_seconds,
            detector_errors={
                name: (count, analyzer.first_error.get(name, ""))
                for name, count in analyzer.detector_errors.items()
                if count
            },
        )
