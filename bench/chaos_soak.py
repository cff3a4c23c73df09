"""Seeded chaos soak of cluster mode with an offline checker (DESIGN.md section 6, G6-G8).

Real processes: a redis-server, N `avmon serve` members each reaching Redis through its
own cuttable TCP proxy, live MPEG-TS feeds over HTTP (a real sender each; black for
``BLACK`` seconds of every ``LOOP`` seconds), and a webhook receiver recording every
delivery. For ``--duration`` seconds, every few seconds one fault picked by a seeded RNG:
SIGKILL a member (restarted after a while), SIGTERM a member (restarted), SIGSTOP one for
a few seconds, cut one member off from Redis, pause Redis, kill Redis and restart it
empty. Then faults stop, the cluster settles, and the checker reads the receiver's log
(verified with the standardwebhooks library) against the feeds' ground truth:

- duplicate opens: one black run of one stream opened under more than one defect id;
- orphans: a defect opened and never closed (its run long over);
- lost: a black run of one stream no defect covered at all;
- stale side effects: a delivered event carrying a fencing epoch older than one already
  delivered for the same unit (delivery is in commit order, so a stale writer's commit
  after its successor's would show here);
- duplicate deliveries: one event id delivered twice (allowed by at-least-once only when
  a deliverer died mid-POST; counted).

    python bench/chaos_soak.py [--duration 600] [--members 3] [--streams 4] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.synth import SynthSpec, parse_injections, synthesize
from tests.integration.cluster import HOOK_SECRET, Member, RedisServer
from tests.integration.live_http import LiveHttpSource
from tests.integration.netproxy import CutProxy
from tests.integration.service_proc import Hooks

LOOP, BLACK_FROM, BLACK_TO = 20.0, 4.0, 16.0  # 12 s of black in every 20 s
FAULTS = ("sigkill", "sigterm", "sigstop", "cut", "redis_pause", "redis_restart")


def _wall(iso: str | None) -> float | None:
    if iso is None:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Soak:
    def __init__(self, tmp: Path, members: int, streams: int, seed: int) -> None:
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.server = RedisServer(tmp)
        self.hooks = Hooks(HOOK_SECRET)  # verified on arrival, as a receiver does
        clip = tmp / "clip.ts"
        synthesize(
            SynthSpec(
                out=clip,
                duration=LOOP,
                width=320,
                height=180,
                content="scene",
                audio="tone",
                injections=parse_injections(f"black@{BLACK_FROM:g}-{BLACK_TO:g}"),
                seed=1,
            )
        )
        self.sources = [LiveHttpSource(clip) for _ in range(streams)]
        self.proxies = {f"m{i + 1}": CutProxy(self.server.port) for i in range(members)}
        self.members: dict[str, Member] = {}
        for name in self.proxies:
            self.start(name)
        self.stream_source: dict[str, LiveHttpSource] = {}
        first = next(iter(self.members.values()))
        for i, src in enumerate(self.sources):
            body = {"name": f"soak-{i}", "url": src.url, "detectors": ["black"]}
            status, doc = first.request("POST", "/api/v1/streams", body)
            assert status == 201, doc
            self.stream_source[doc["id"]] = src
        self.faults: Counter[str] = Counter()
        self.down: dict[str, float] = {}  # member -> when to start it again
        self.started = time.time()
        self.stopped = 0.0  # when the last fault ended
        self.fault_log: list[str] = []

    def start(self, name: str) -> None:
        proxy = self.proxies[name]
        self.members[name] = Member(
            self.tmp,
            f"redis://127.0.0.1:{proxy.port}/0",
            name,
            self.tmp / "units.log",
            AVMON_WEBHOOK_URLS=self.hooks.url,
            AVMON_WEBHOOK_SECRET=HOOK_SECRET,
        )

    def alive(self) -> list[str]:
        return [n for n, m in self.members.items() if m.proc.poll() is None]

    def fault(self) -> None:
        kind = self.rng.choice(FAULTS)
        alive = self.alive()
        if kind in ("sigkill", "sigterm") and len(alive) <= 1:
            kind = "sigstop"
        victim = self.rng.choice(alive) if alive else None
        self.faults[kind] += 1
        line = f"{time.time():.1f} {kind} {victim or ''}"
        self.fault_log.append(line)
        print(line, flush=True)
        if kind == "sigkill" and victim:
            self.members[victim].kill()
            self.down[victim] = time.monotonic() + self.rng.uniform(2, 10)
        elif kind == "sigterm" and victim:
            self.members[victim].signal(signal.SIGTERM)
            self.members[victim].proc.wait(15)
            self.down[victim] = time.monotonic() + self.rng.uniform(2, 10)
        elif kind == "sigstop" and victim:
            self.members[victim].signal(signal.SIGSTOP)
            time.sleep(self.rng.uniform(1, 5))
            self.members[victim].signal(signal.SIGCONT)
        elif kind == "cut" and victim:
            self.proxies[victim].cut()
            time.sleep(self.rng.uniform(2, 10))
            self.proxies[victim].heal()
        elif kind == "redis_pause":
            self.server.pause()
            time.sleep(self.rng.uniform(2, 10))
            self.server.resume()
        elif kind == "redis_restart":
            self.server.stop()
            time.sleep(self.rng.uniform(1, 6))
            self.server.start()

    def restart_due(self) -> None:
        for name, when in list(self.down.items()):
            if time.monotonic() >= when:
                del self.down[name]
                self.start(name)

    def run(self, duration: float) -> None:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            time.sleep(self.rng.uniform(3, 10))
            self.restart_due()
            self.fault()
        for name in list(self.down):
            self.down[name] = 0.0
        self.restart_due()
        self.stopped = time.time()

    def settle(self) -> None:
        """Faults over: wait for the runs in flight to end and their closes to arrive."""
        time.sleep(LOOP + 15.0)

    def close(self) -> None:
        for m in self.members.values():
            if m.proc.poll() is None:
                m.stop()
        for src in self.sources:
            src.close()
        for p in self.proxies.values():
            p.close()
        self.hooks.close()
        self.server.stop()


def check(soak: Soak, keep: Path | None) -> dict[str, Any]:
    if keep is not None:  # the logs, for a second look
        import shutil

        keep.mkdir(parents=True, exist_ok=True)
        raw = [
            json.dumps({"webhook-id": h.get("webhook-id"), "event": json.loads(b)})
            for b, h in zip(list(soak.hooks.bodies), list(soak.hooks.headers), strict=False)
        ]
        (keep / "receiver.jsonl").write_text("\n".join(raw) + "\n")
        (keep / "faults.log").write_text("\n".join(soak.fault_log) + "\n")
        for f in [soak.tmp / "units.log", *soak.tmp.glob("serve-*.log")]:
            if f.exists():
                shutil.copy(f, keep / f.name)
    delivered = soak.hooks.verified(HOOK_SECRET)
    ids = Counter(event_id for event_id, _ in delivered)
    per_defect: dict[str, list[dict[str, Any]]] = defaultdict(list)
    stale = 0
    newest_epoch: dict[tuple[str, str], int] = {}
    for _, event in delivered:
        d = event["defect"]
        if d["type"] != "black":
            continue
        per_defect[d["id"]].append(event)
        unit = (d["stream_id"], d["group"])
        if d["epoch"] < newest_epoch.get(unit, 0):
            stale += 1
            print(f"stale: {event['kind']} {d['id']} epoch {d['epoch']} < {newest_epoch[unit]}")
        newest_epoch[unit] = max(newest_epoch.get(unit, 0), d["epoch"])
    # Ground truth: each feed's black runs in wall time (its first packet + the loop).
    horizon = soak.stopped + LOOP  # runs that began while faults still ran, or just after
    duplicates = lost = orphans = conditions = 0
    for sid, src in soak.stream_source.items():
        t0 = src.started + 0.5  # the sender plays 0.5 s ahead of its clock
        k = 0
        while t0 + k * LOOP + BLACK_TO < horizon:
            begin, end = t0 + k * LOOP + BLACK_FROM, t0 + k * LOOP + BLACK_TO
            k += 1
            covering = {
                did
                for did, evs in per_defect.items()
                if evs[0]["defect"]["stream_id"] == sid and _overlaps(evs, begin, end)
            }
            if begin < soak.started + 5:
                continue  # the streams were still starting
            conditions += 1
            if not covering:
                lost += 1
                print(f"lost: {sid} black {begin:.1f}-{end:.1f}")
            elif len(covering) > 1:
                duplicates += len(covering) - 1
                print(f"duplicate: {sid} black {begin:.1f}-{end:.1f}: {sorted(covering)}")
    still_on = time.time() - (BLACK_TO - BLACK_FROM) - 10.0  # opened since: may be on
    for did, evs in per_defect.items():
        kinds = [e["kind"] for e in evs]
        if "close" not in kinds and (_wall(evs[0]["defect"]["started_at"]) or 0) < still_on:
            orphans += 1
            d = evs[0]["defect"]
            ago = time.time() - (_wall(d["started_at"]) or 0.0)
            print(
                f"orphan: {did} {kinds} stream {d['stream_id']} epoch {d['epoch']} {ago:.0f} s ago"
            )
    return {
        "faults": dict(soak.faults),
        "conditions": conditions,
        "defects": len(per_defect),
        "deliveries": len(delivered),
        "duplicate_opens": duplicates,
        "orphans": orphans,
        "lost": lost,
        "stale_side_effects": stale,
        "duplicate_deliveries": sum(n - 1 for n in ids.values() if n > 1),
    }


def _overlaps(events: list[dict[str, Any]], begin: float, end: float) -> bool:
    d = events[-1]["defect"]
    start = _wall(d["started_at"]) or 0.0
    stop = _wall(d["ended_at"]) or start
    return start < end + 1.0 and stop > begin - 1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep the receiver's, units' and members' logs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avmon-soak-") as tmp:
        soak = Soak(Path(tmp), args.members, args.streams, args.seed)
        try:
            soak.run(args.duration)
            soak.settle()
            result = check(soak, args.keep)
        finally:
            soak.close()
    print(json.dumps(result, indent=2))
    bad = sum(result[k] for k in ("duplicate_opens", "orphans", "lost", "stale_side_effects"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
