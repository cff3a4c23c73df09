"""CPU and memory of avmon vs decoding alone vs FFmpeg's filters, on two 1080p30 clips in
one run: avmon's synthetic scene + speech, and FFmpeg's ``testsrc2`` + a tone (x264, a
clip avmon did not make). Then peak RSS on a corrupted 1080p clip.

    python bench/cpu.py [--duration 60] [--repeat 2] [--json]

Per clip: (a) PyAV decoding alone with one thread, (b) ``avmon check`` with every default
detector, (c) the same decode feeding libavfilter (service/benchmark.py). Variants are
interleaved and the minimum of ``--repeat`` rounds kept; b/a is the figure of merit.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import benchmark
from service.synth import SynthSpec, synthesize
from tests.lavfi_clips import make_clip

TS_PACKET = 188


def corrupt_ts(src: Path, dst: Path, share: float, seed: int) -> int:
    """Copy of ``src`` with ``share`` of its TS packets' payloads overwritten by random
    bytes (sync bytes and headers kept, so the demuxer keeps going): damage as a lossy
    link leaves it. Returns how many packets were damaged."""
    rng = random.Random(seed)
    data = bytearray(src.read_bytes())
    damaged = 0
    for off in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        if rng.random() < share:
            data[off + 4 : off + TS_PACKET] = rng.randbytes(TS_PACKET - 4)
            damaged += 1
    dst.write_bytes(bytes(data))
    return damaged


def measure_clip(path: str, repeat: int, label: str) -> dict[str, Any]:
    header = {
        "source": label,
        "synthesized": False,
        "clip": benchmark._clip_facts(path),
        "machine": benchmark._machine(),
        "repeat": repeat,
    }
    results = benchmark.measure(path, repeat)
    memory = benchmark.measure_memory(path, header["clip"]["duration_s"])
    return benchmark.build_report(header, results, memory)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--corrupt-share", type=float, default=0.01)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avmon-cpu-") as tmp:
        d = Path(tmp)
        synth = d / "synth.ts"
        synthesize(
            SynthSpec(
                out=synth,
                duration=args.duration,
                width=1920,
                height=1080,
                content="scene",
                audio="speech",
            )
        )
        pattern = make_clip(d / "testsrc2.ts", "testsrc2", "1920x1080", args.duration, tone_hz=1000)
        broken = d / "corrupted.ts"
        damaged = corrupt_ts(synth, broken, args.corrupt_share, seed=1)
        docs = {
            "synth 1080p30 scene + speech": measure_clip(str(synth), args.repeat, "synth"),
            "testsrc2 1080p30 + 1 kHz tone": measure_clip(str(pattern), args.repeat, "testsrc2"),
        }
        corrupted = benchmark.measure_memory(str(broken), args.duration)
        corrupted["damaged_ts_packets"] = damaged
    if args.json:
        print(json.dumps({"clips": docs, "corrupted_memory": corrupted}))
        return 0
    for label, doc in docs.items():
        print(f"=== {label}")
        benchmark.print_table(doc)
        print()
    peak = max(corrupted["short"]["peak_rss_mb"], corrupted["long"]["peak_rss_mb"])
    print(
        f"=== corrupted synth 1080p ({damaged} TS packets of "
        f"{args.corrupt_share:.0%} overwritten): peak RSS {peak:.1f} MB "
        f"(after imports {corrupted['long']['baseline_rss_mb']:.1f} MB; target < 200 MB)"
    )
    for label, doc in docs.items():
        print(f"b/a {label}: {doc['ratios']['avmon_over_decode']:.3f} (target <= 1.20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
