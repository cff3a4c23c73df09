"""Where a live stream's CPU goes: N stream runners at real time in one process, split
by thread kind (the reader: demux, decode, frame views; the analyser: detectors and
bookkeeping) and by detector, next to the decode-only floor (bench/live_decode.py) at
the same N (bench/load.py's floor trial), each in its own process pinned to one core,
interleaved.

bench/load.py answers how many streams fit; this says what each costs and why. No API
or server: the same `StreamRunner` `avmon serve` runs, with no-op event callbacks.

    python bench/live_split.py [--size 1280x720] [--streams 8] [--seconds 12] [--repeat 2]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WARM_UP_S = 3.0
TICKS = os.sysconf("SC_CLK_TCK")


def by_thread_kind() -> tuple[Counter[str], Counter[str]]:
    """CPU seconds and thread switches (voluntary and not) so far, per thread name
    prefix ("read", "analyse", ...)."""
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
            if "ctxt_switches:" in line:
                switches[kind] += int(line.split()[1])
    return cpu, switches


def start_runners(clip: str, n: int, detectors: list[str] | None = None) -> list[Any]:
    """N looping paced runners of ``clip`` (every default detector unless named), with
    no-op event callbacks -- the `StreamRunner` `avmon serve` runs."""
    from service.detectors import registry
    from service.pipeline.runner import StreamRunner, StreamSpec

    names = registry.resolve_names(detectors)
    runners = []
    for i in range(n):
        spec = StreamSpec(id=f"s{i}", name="s", url=clip, detectors=names, loop=True)
        runner = StreamRunner(spec, lambda *_: None)
        runner.start()
        runners.append(runner)
    return runners


def run_runners(clip: str, n: int, seconds: float) -> dict[str, Any]:
    """N looping live runners with every default detector (run in the child process)."""
    runners = start_runners(clip, n)
    time.sleep(WARM_UP_S)
    frames0 = sum(r.stats.frames for r in runners)
    det0: Counter[str] = Counter()
    for r in runners:
        det0.update(r.analyzer.detector_seconds)
    threads0, wall0 = by_thread_kind()[0], time.monotonic()
    time.sleep(seconds)
    threads1, wall1 = by_thread_kind()[0], time.monotonic()
    frames = sum(r.stats.frames for r in runners) - frames0
    det1: Counter[str] = Counter()
    for r in runners:
        det1.update(r.analyzer.detector_seconds)
    span = wall1 - wall0
    return {
        "frames": frames,
        "expected_frames": round(30 * span * n),
        "dropped": sum(r.stats.dropped for r in runners),
        "cpu_per_stream": {k: (threads1[k] - threads0[k]) / span / n for k in threads1},
        "detector_ms_per_frame": {
            k: 1000 * (det1[k] - det0[k]) / max(frames, 1) for k in det1 if det1[k] > det0[k]
        },
    }


def _runners_child(clip: str, n: int, seconds: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", clip, str(n), str(seconds)]
    env = {**os.environ, "AVMON_DECODE_THREADS": "single"}  # one decoder thread, as the floor
    out = subprocess.run(
        ["taskset", "-c", "0", *cmd], capture_output=True, text=True, env=env, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        clip, n, seconds = args.child
        print(json.dumps(run_runners(clip, int(n), float(seconds))))
        os._exit(0)  # runner threads are daemons mid-decode: do not wait for them

    from bench.load import floor_trial
    from service.synth import SynthSpec, synthesize

    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = str(Path(tmp) / "clip.ts")
        synthesize(SynthSpec(out=Path(clip), duration=20.0, width=w, height=h, audio="speech"))
        print(f"{args.size} 30 fps, {args.streams} streams, one core, every default detector")
        for _ in range(args.repeat):
            floor = floor_trial(Path(clip), args.streams, args.seconds, "0")
            ours = _runners_child(clip, args.streams, args.seconds)
            threads = {k: v for k, v in ours["cpu_per_stream"].items() if v >= 0.0005}
            total = sum(threads.values())
            print(
                f"  decode only {100 * floor['cpu_per_stream']:.2f}% of a core per stream;"
                f" avmon {100 * total:.2f}% ("
                + ", ".join(f"{k} {100 * v:.2f}%" for k, v in sorted(threads.items()))
                + f"): decode-only / avmon = {floor['cpu_per_stream'] / total:.2f};"
                f" frames {ours['frames']}/{ours['expected_frames']}, dropped {ours['dropped']}"
            )
            dets = sorted(ours["detector_ms_per_frame"].items(), key=lambda kv: -kv[1])
            print(
                f"    detectors {sum(v for _, v in dets):.3f} ms per video frame: "
                + ", ".join(f"{k} {v:.3f}" for k, v in dets)
            )


if __name__ == "__main__":
    main()
