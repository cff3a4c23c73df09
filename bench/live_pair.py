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

    python bench/live_pair.py OLD_CHECKOUT NEW_CHECKOUT [--streams 3] [--seconds 15] [--repeat 4]

(`git worktree add /tmp/old <rev>` gives a checkout of an earlier revision.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

WARM_UP_S = 3.0
TICKS = os.sysconf("SC_CLK_TCK")


def _by_thread_kind() -> tuple[Counter[str], Counter[str]]:
    """CPU seconds and thread switches so far, per thread name prefix ("read", ...)."""
    names = {t.native_id: t.name.split("-")[0] for t in threading.enumerate()}
    cpu: Counter[str] = Counter()
    switches: Counter[str] = Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/self/task/{tid}/status").read_text()
        except OSError:
            continue  # the thread ended
        kind = names.get(int(tid), "other")
        cpu[kind] += (int(stat[11]) + int(stat[12])) / TICKS
        for line in status.splitlines():
            if "ctxt_switches:" in line:  # voluntary and not
                switches[kind] += int(line.split()[1])
    return cpu, switches


def run_side(clip: str, n: int, seconds: float) -> dict[str, Any]:
    """N paced runners of the checkout this process imports (run in the child)."""
    from service.detectors import registry
    from service.pipeline.runner import StreamRunner, StreamSpec

    names = registry.resolve_names(None)
    runners = []
    for i in range(n):
        spec = StreamSpec(id=f"s{i}", name="s", url=clip, detectors=names, loop=True)
        runner = StreamRunner(spec, lambda *_: None)
        runner.start()
        runners.append(runner)
    time.sleep(WARM_UP_S)
    frames0 = sum(r.stats.frames for r in runners)
    (cpu0, sw0), wall0 = _by_thread_kind(), time.monotonic()
    time.sleep(seconds)
    (cpu1, sw1), wall1 = _by_thread_kind(), time.monotonic()
    span = wall1 - wall0
    return {
        "frames": sum(r.stats.frames for r in runners) - frames0,
        "due": round(30 * span * n),
        "dropped": sum(r.stats.dropped for r in runners),
        "cpu": {k: (cpu1[k] - cpu0[k]) / span / n for k in cpu1},
        "switches": {k: (sw1[k] - sw0[k]) / span / n for k in sw1},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--streams", type=int, default=3, help="streams a side")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        clip, n, seconds = args.child
        print(json.dumps(run_side(clip, int(n), float(seconds))))
        os._exit(0)  # runner threads are daemons mid-decode: do not wait for them

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from service.synth import SynthSpec, synthesize

    w, h = (int(v) for v in args.size.split("x"))
    sides = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
    with tempfile.TemporaryDirectory() as tmp:
        clip = str(Path(tmp) / "clip.ts")
        synthesize(SynthSpec(out=Path(clip), duration=20.0, width=w, height=h, audio="speech"))
        print(f"{args.size} 30 fps, {args.streams} paced streams a side, both on core 0")
        env = {**os.environ, "AVMON_DECODE_THREADS": "single", "AVMON_ALLOW_FILE_SOURCES": "true"}
        for _ in range(args.repeat):
            # This script for both sides, each importing its own `service` (PYTHONPATH).
            child = ["taskset", "-c", "0", sys.executable, __file__, "x", "y", "--child", clip]
            child += [str(args.streams), str(args.seconds)]
            procs = {
                name: subprocess.Popen(
                    child,
                    cwd=root,
                    env={**env, "PYTHONPATH": str(root)},
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for name, root in sides.items()
            }
            for name, proc in procs.items():
                out, _ = proc.communicate()
                r = json.loads(out.strip().splitlines()[-1])
                cpu = {k: v for k, v in r["cpu"].items() if v >= 0.0005}
                print(
                    f"  {name}: {100 * sum(cpu.values()):.2f} % a stream ("
                    + ", ".join(f"{k} {100 * v:.2f} %" for k, v in sorted(cpu.items()))
                    + "); switches a stream a second: "
                    + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["switches"].items()) if v >= 1)
                    + f"; frames {r['frames']}/{r['due']}, dropped {r['dropped']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
