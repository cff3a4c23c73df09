"""Seeded churn soak with real processes, and its offline checker.

Random kill / term / start / Redis pause every few seconds, keeping 2..6 members, for
``--minutes``. Afterwards the members' unit logs (monotonic_ns, merged) are checked:
no unit may run on two members at once (double ownership; a SIGKILLed member's open
interval ends at its kill), and per unit the gaps with no owner are measured.

    python bench/churn.py [--minutes 10] [--seed 7] [--streams 6]
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.synth import SynthSpec, synthesize
from tests.integration.cluster import Member, RedisServer, UnitLog, now_ns


def check(log: UnitLog, killed_at: dict[str, list[int]], start: int, end: int) -> dict[str, float]:
    """Double ownership, longest orphan gap and orphaned unit-seconds."""

    def close(pod: str, t0: int, t1: int | None) -> int:
        if t1 is not None:
            return t1
        later = [k for k in killed_at.get(pod, []) if k >= t0]
        return min(later) if later else end

    doubles = 0
    longest = 0.0
    orphaned = 0.0
    for runs in log.intervals.values():
        spans = sorted((r.start, close(r.pod, r.start, r.stop), r.pod) for r in runs)
        # A SIGKILLed member's run ends at its kill (it wrote no "stop").
        for i, (a0, a1, pa) in enumerate(spans):
            for b0, b1, pb in spans[i + 1 :]:
                if pa != pb and b0 < a1 and a0 < b1:
                    doubles += 1
        cursor = start
        for s0, s1, _ in spans:
            if s0 > cursor:
                gap = (s0 - cursor) / 1e9
                longest = max(longest, gap)
                orphaned += gap
            cursor = max(cursor, s1)
        if cursor < end:
            gap = (end - cursor) / 1e9
            longest = max(longest, gap)
            orphaned += gap
    return {
        "double_ownership": doubles,
        "longest_orphan_gap_s": longest,
        "orphaned_unit_s": orphaned,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--streams", type=int, default=6)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="avmon-churn-") as tmp_s:
        tmp = Path(tmp_s)
        clip = tmp / "clip.ts"
        synthesize(SynthSpec(out=clip, duration=8, width=320, height=180))
        server = RedisServer(tmp)
        log_path = tmp / "units.log"
        members: dict[str, Member] = {}
        serial = 0

        def spawn() -> None:
            nonlocal serial
            serial += 1
            name = f"m{serial}"
            members[name] = Member(tmp, server.url, name, log_path)

        for _ in range(3):
            spawn()
        first = next(iter(members.values()))
        for i in range(args.streams):
            first.request(
                "POST", "/api/v1/streams", {"name": f"cam-{i}", "url": str(clip), "loop": True}
            )
        time.sleep(5)
        killed_at: dict[str, list[int]] = {}
        start = now_ns()
        deadline = time.monotonic() + args.minutes * 60
        actions = 0
        try:
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(2.0, 6.0))
                alive = [n for n, m in members.items() if m.proc.poll() is None]
                choice = rng.choice(["kill", "term", "start", "start", "pause_redis"])
                if choice in ("kill", "term") and len(alive) > 2:
                    victim = rng.choice(alive)
                    if choice == "kill":
                        killed_at.setdefault(victim, []).append(now_ns())
                        members[victim].kill()
                    else:
                        members[victim].signal(signal.SIGTERM)
                elif choice == "start" and len(alive) < 6:
                    spawn()
                elif choice == "pause_redis":
                    server.pause()
                    time.sleep(rng.uniform(0.5, 5.0))
                    server.resume()
                actions += 1
                print(
                    f"{time.monotonic() - deadline + args.minutes * 60:6.1f} s {choice} "
                    f"(alive {len(alive)})",
                    flush=True,
                )
            time.sleep(10)  # let it settle before the end mark
        finally:
            end = now_ns()
            for m in members.values():
                if m.proc.poll() is None:
                    m.stop()
            server.stop()
        result = check(UnitLog.read(log_path), killed_at, start, end)
        print(
            f"\nchurn soak: {args.minutes:g} min, seed {args.seed}, {actions} actions, "
            f"{args.streams * 3} units"
        )
        for k, v in result.items():
            print(f"  {k}: {v:.2f}" if isinstance(v, float) else f"  {k}: {v}")


if __name__ == "__main__":
    main()
