"""Why analysis costs more live than in a tight loop: the detectors' state is cold after
a decode. One stream, one thread: decode K pictures (and the audio between them), then
analyse them with every default detector; analysis CPU a picture per K. K = 1 is what a
live stream does (the analyser gets each picture as it is decoded); a larger K keeps the
detectors' arrays, numpy's code and the interpreter's warm across K pictures -- and
holds K decoded pictures back, which the decoder's buffer pool grows by. Every K once
per round, rounds interleaved, the least per K.

    python bench/analysis_batch.py [--size 1280x720] [--ks 1,4,8,30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def analyse_in_batches(clip: str, k: int) -> tuple[float, float, int]:
    """(analysis, decode) CPU seconds a picture, and pictures, for batches of ``k``."""
    from service.detectors import registry
    from service.media.decoder import MediaReader
    from service.media.frames import VideoFrame
    from service.pipeline.analyzer import Analyzer

    analyzer = Analyzer(registry.build(None))
    analysis = decode = 0.0
    pictures, pending = 0, []
    with MediaReader(clip, threads="NONE") as reader:
        items = reader.frames()
        while True:
            t = time.thread_time()
            item = next(items, None)
            decode += time.thread_time() - t
            if item is None:
                break
            pending.append(item)
            if isinstance(item, VideoFrame):
                pictures += 1
                if pictures % k == 0:
                    t = time.thread_time()
                    for x in pending:
                        analyzer.feed(x)
                    analysis += time.thread_time() - t
                    pending = []
    return analysis / pictures, decode / pictures, pictures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--ks", default="1,4,8,30")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from service.synth import SynthSpec, synthesize

    ks = [int(k) for k in args.ks.split(",")]
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        clip = str(Path(d) / "clip.ts")
        synthesize(SynthSpec(out=Path(clip), duration=20.0, width=w, height=h, audio="speech"))
        best: dict[int, tuple[float, float, int]] = {}
        for r in range(args.rounds):
            for k in ks if r % 2 == 0 else ks[::-1]:
                got = analyse_in_batches(clip, k)
                if k not in best or got[0] < best[k][0]:
                    best[k] = got
    print(f"{args.size}, every default detector, least of {args.rounds} rounds")
    print("  K   analysis ms a picture   x K=1   decode ms a picture")
    for k in ks:
        a, dec, _ = best[k]
        print(f"{k:3d}   {a * 1e3:21.3f}   {a / best[ks[0]][0]:5.2f}   {dec * 1e3:19.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
