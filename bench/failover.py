"""Failover and handoff times over many trials, with real processes (DESIGN.md G1, G2).

A real redis-server and N `avmon serve` members on loopback run looping file streams.
Each trial SIGKILLs (or SIGTERMs) a random member and measures, from the members' unit
logs, when the last of its units was running again on a survivor -- its runner analysed
a frame (logged by the runner, not the coordinator); the member is then started
again and the cluster left to rebalance. Prints p50/p99/max per kind.

    python bench/failover.py [--trials 30] [--members 3] [--streams 6] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.synth import SynthSpec, parse_injections, synthesize
from tests.integration.cluster import Member, RedisServer, UnitLog, now_ns
from tests.integration.service_proc import wait_for


def owners(server: RedisServer) -> dict[tuple[str, str], str]:
    import redis

    r = redis.Redis(port=server.port)
    out = {}
    for field, value in r.hgetall("avmon:leases").items():
        sid, _, group = field.decode().partition("|")
        out[(sid, group)] = value.decode().rsplit("|", 2)[0]
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--streams", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="avmon-failover-") as tmp_s:
        tmp = Path(tmp_s)
        clip = tmp / "clip.ts"
        synthesize(
            SynthSpec(
                out=clip,
                duration=8,
                width=320,
                height=180,
                injections=parse_injections("black@3-5"),
            )
        )
        server = RedisServer(tmp)
        log_path = tmp / "units.log"
        names = [f"m{i}" for i in range(1, args.members + 1)]
        members = {n: Member(tmp, server.url, n, log_path) for n in names}
        for i in range(args.streams):
            members[names[0]].request(
                "POST", "/api/v1/streams", {"name": f"cam-{i}", "url": str(clip), "loop": True}
            )
        total = args.streams * 3
        assert wait_for(lambda: len(owners(server)) == total, 30)
        results: dict[str, list[float]] = {"sigkill": [], "sigterm": []}
        exits: list[float] = []
        try:
            for trial in range(args.trials * 2):
                kind = "sigkill" if trial % 2 == 0 else "sigterm"
                victim = rng.choice(names)
                units = {u for u, o in owners(server).items() if o == victim}
                t0 = now_ns()
                wall = time.monotonic()
                if kind == "sigkill":
                    members[victim].kill()
                else:
                    members[victim].signal(signal.SIGTERM)
                    members[victim].proc.wait(30)
                    exits.append(time.monotonic() - wall)
                survivors = [n for n in names if n != victim]
                ok = wait_for(
                    lambda u=units, s=survivors: all(owners(server).get(x) in s for x in u),
                    20,
                    0.05,
                )
                # Running again = the new owner's runner analysed a frame of the unit.
                ok = ok and wait_for(lambda u=units, t=t0: _first_frames(log_path, u, t), 10, 0.05)
                firsts = _first_frames(log_path, units, t0)
                took = (max(firsts.values()) - t0) / 1e9 if ok and firsts else float("inf")
                results[kind].append(took)
                print(
                    f"trial {trial:3d} {kind:7s} {victim}: {len(units)} units analysing again "
                    f"in {took:.2f} s",
                    flush=True,
                )
                members[victim] = Member(tmp, server.url, victim, log_path)
                wait_for(lambda: _balanced(owners(server), names, total), 20)
        finally:
            for m in members.values():
                if m.proc.poll() is None:
                    m.stop()
            server.stop()
        overlaps = UnitLog.read(log_path).overlaps()
        live = [o for o in overlaps if o[1].stop is not None and o[2].stop is not None]
        print()
        for kind, values in results.items():
            print(
                f"{kind}: n={len(values)} p50={statistics.median(values):.2f} s "
                f"p99={percentile(values, 0.99):.2f} s max={max(values):.2f} s"
            )
        if exits:
            print(f"sigterm exit: p50={statistics.median(exits):.2f} s max={max(exits):.2f} s")
        print(f"overlapping runs of one unit on two members (both closed): {len(live)}")


def _first_frames(log_path: Path, units: set[Any], t0: int) -> dict[Any, int]:
    """unit -> when its new owner first analysed a frame after ``t0``; {} until all did."""
    firsts: dict[Any, int] = {}
    for t, _, sid, g in UnitLog.read(log_path).runs_after(t0):
        if (sid, g) in units:
            firsts.setdefault((sid, g), t)
    return firsts if len(firsts) == len(units) else {}


def _balanced(current: dict[tuple[str, str], str], names: list[str], total: int) -> bool:
    if len(current) != total:
        return False
    counts = [sum(1 for o in current.values() if o == n) for n in names]
    return max(counts) - min(counts) <= 1


if __name__ == "__main__":
    main()
