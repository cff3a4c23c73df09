"""Two checkouts side by side: N paced live streams from each, at the same time, one core.

On a shared host the speed of a core moves by 10-30 % within minutes, more than most
changes are worth, so two runs one after the other compare the host's minutes as much as
the code. Here checkout A's and checkout B's `StreamRunner`s (every default detector, the
same looping clip, `pace: live`) run in two processes pinned to the same core at once: the
same host conditions, shared fairly. Printed per side: CPU a stream (% of a core), by
thread kind (the reader: demux, decode; the analyser: detectors and bookkeeping), thread
switches a stream per second, and the frames analysed against those due. Keep the core
under ~80 % busy (2 x N streams): saturated, the side that wakes more often is scheduled
first and the other falls behind, and CPU a stream then compares different work.

    python bench/live_pair.py CHECKOUT_A CHECKOUT_B [--streams 3] [--seconds 15] [--repeat 4]
    python bench/live_pair.py floor . [--detectors black,clipping]

(`git worktree add /tmp/old <rev>` gives a checkout of an earlier revision.) A side named
`floor` is the decode-only floor (bench/live_decode.py: PyAV alone, the same clip, paced
alike): against it, the cost of avmon a stream as a ratio no host drift moves.
`--detectors` runs a selection instead of every default detector (what the pipeline costs
without them, say).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_side(clip: str, n: int, seconds: float, detectors: str) -> dict[str, Any]:
    """N paced runners of the checkout this process imports (run in the child)."""
    # The side's `service` first (PYTHONPATH): live_split, from this script's folder, puts
    # this checkout on sys.path, and what is imported by then stays.
    import service.pipeline.runner

    code = str(Path(service.pipeline.runner.__file__).parents[2])
    from live_split import WARM_UP_S, by_thread_kind, start_runners

    runners = start_runners(clip, n, detectors.split(",") if detectors else None)
    time.sleep(WARM_UP_S)
    frames0 = sum(r.stats.frames for r in runners)
    (cpu0, sw0), wall0 = by_thread_kind(), time.monotonic()
    time.sleep(seconds)
    (cpu1, sw1), wall1 = by_thread_kind(), time.monotonic()
    span = wall1 - wall0
    return {
        "frames": sum(r.stats.frames for r in runners) - frames0,
        "due": round(30 * span * n),
        "dropped": sum(r.stats.dropped for r in runners),
        "cpu": {k: (cpu1[k] - cpu0[k]) / span / n for k in cpu1},
        "switches": {k: (sw1[k] - sw0[k]) / span / n for k in sw1},
        "code": code,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", help="a checkout, or floor")
    ap.add_argument("b", help="a checkout, or floor")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--streams", type=int, default=3, help="streams a side")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--detectors", default="", help="comma-separated (default: the defaults)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        clip, n, seconds = args.child
        print(json.dumps(run_side(clip, int(n), float(seconds), args.detectors)))
        os._exit(0)  # runner threads are daemons mid-decode: do not wait for them

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from service.synth import SynthSpec, synthesize

    w, h = (int(v) for v in args.size.split("x"))
    here = Path(__file__).resolve().parents[1]
    sides = {  # by how it is printed: "A" / "B", the floor as "floor"
        ("floor" if arg == "floor" else label): None if arg == "floor" else Path(arg).resolve()
        for label, arg in (("A", args.a), ("B", args.b))
    }
    with tempfile.TemporaryDirectory() as tmp:
        clip = str(Path(tmp) / "clip.ts")
        synthesize(SynthSpec(out=Path(clip), duration=20.0, width=w, height=h, audio="speech"))
        print(f"{args.size} 30 fps, {args.streams} paced streams a side, both on core 0")
        env = {**os.environ, "AVMON_DECODE_THREADS": "single", "AVMON_ALLOW_FILE_SOURCES": "true"}
        for _ in range(args.repeat):
            # This script for both sides, each importing its own `service` (PYTHONPATH).
            child = ["taskset", "-c", "0", sys.executable, __file__, "x", "y", "--child", clip]
            child += [str(args.streams), str(args.seconds), "--detectors", args.detectors]
            floor = ["taskset", "-c", "0", sys.executable, str(here / "bench" / "live_decode.py")]
            floor += [clip, str(args.streams), str(args.seconds)]
            procs = {
                name: subprocess.Popen(
                    child if root is not None else floor,
                    cwd=root or here,
                    env={**env, "PYTHONPATH": str(root or here)},
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for name, root in sides.items()
            }
            totals: dict[str, float] = {}
            for name, proc in procs.items():
                out, _ = proc.communicate()
                r = json.loads(out.strip().splitlines()[-1])
                if sides[name] is None:  # the floor: one process, one kind of thread
                    totals["floor"] = r["cpu_per_stream"]
                    print(
                        f"  decode only: {100 * r['cpu_per_stream']:.2f} % a stream; "
                        f"frames {r['frames']:.0f}/{r['expected_frames']}",
                        flush=True,
                    )
                    continue
                cpu = {k: v for k, v in r["cpu"].items() if v >= 0.0005}
                totals["avmon"] = sum(cpu.values())
                print(
                    f"  {name} ({r['code']}): {100 * sum(cpu.values()):.2f} % a stream ("
                    + ", ".join(f"{k} {100 * v:.2f} %" for k, v in sorted(cpu.items()))
                    + "); switches a stream a second: "
                    + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["switches"].items()) if v >= 1)
                    + f"; frames {r['frames']}/{r['due']}, dropped {r['dropped']}",
                    flush=True,
                )
            if len(totals) == 2:
                print(f"  => decode-only / avmon = {totals['floor'] / totals['avmon']:.3f}")


if __name__ == "__main__":
    main()
