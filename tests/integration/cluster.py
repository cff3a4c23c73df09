"""Cluster test harness: a real redis-server and real `avmon serve` members on loopback,
plus the offline checker of the members' unit logs (monotonic_ns is shared by every
process on a host, so the logs merge into one exact timeline)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from service.coordination import keys
from tests.integration.service_proc import Hooks, Service, free_port, wait_for

HOOK_SECRET = "cluster-hook-secret"


class RedisServer:
    def __init__(
        self, tmp: Path, port: int | None = None, extra_args: list[str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp = tmp
        self.start()

    def start(self) -> None:
        # No persistence: a restart comes back empty, the worst case for epochs.
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        args = self.extra_args
        password = args[args.index("--requirepass") + 1] if "--requirepass" in args else None
        client = redis.Redis(port=self.port, password=password)
        assert wait_for(lambda: _ping(client), 10), "redis-server did not start"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


def _ping(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


class Member(Service):
    def __init__(self, tmp: Path, redis_url: str, name: str, unit_log: Path, **env: str) -> None:
        self.name = name
        super().__init__(
            tmp,
            AVMON_REDIS_URL=redis_url,
            AVMON_POD_NAME=name,
            AVMON_ALLOW_FILE_SOURCES="true",
            AVMON_UNIT_LOG=str(unit_log),
            AVMON_LEASE_TTL=env.pop("AVMON_LEASE_TTL", "3"),
            **env,
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass
class Interval:
    pod: str
    start: int
    stop: int | None
    epoch: int


@dataclass
class UnitLog:
    """Who ran which unit when, merged from every member's log."""

    intervals: dict[tuple[str, str], list[Interval]] = field(
        default_factory=lambda: defaultdict(list)
    )
    events: list[tuple[int, str, str, str, str, int]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> UnitLog:
        log = cls()
        if not path.exists():
            return log
        for line in sorted(path.read_text().splitlines(), key=lambda s: int(s.split()[0])):
            ns, pod, what, sid, group, epoch = line.split()
            log.events.append((int(ns), pod, what, sid, group, int(epoch)))
            runs = log.intervals[(sid, group)]
            if what == "run":  # the runner analysed its first frame
                continue
            if what == "start":
                runs.append(Interval(pod, int(ns), None, int(epoch)))
            else:
                for run in reversed(runs):
                    if run.pod == pod and run.stop is None:
                        run.stop = int(ns)
                        break
        return log

    def owners_at(self, ns: int) -> dict[tuple[str, str], list[str]]:
        out: dict[tuple[str, str], list[str]] = {}
        for unit, runs in self.intervals.items():
            out[unit] = [r.pod for r in runs if r.start <= ns and (r.stop is None or r.stop > ns)]
        return out

    def overlaps(self) -> list[tuple[tuple[str, str], Interval, Interval]]:
        """Pairs of intervals of one unit on two members that intersect."""
        found = []
        for unit, runs in self.intervals.items():
            for i, a in enumerate(runs):
                for b in runs[i + 1 :]:
                    if a.pod == b.pod:
                        continue
                    a_end = a.stop if a.stop is not None else 1 << 62
                    b_end = b.stop if b.stop is not None else 1 << 62
                    if a.start < b_end and b.start < a_end:
                        found.append((unit, a, b))
        return found

    def starts_after(self, ns: int) -> list[tuple[int, str, str, str]]:
        return [
            (t, pod, sid, g)
            for t, pod, what, sid, g, _ in self.events
            if what == "start" and t > ns
        ]

    def runs_after(self, ns: int) -> list[tuple[int, str, str, str]]:
        """(when, member, stream, group): a new owner's first analysed frame."""
        return [
            (t, pod, sid, g) for t, pod, what, sid, g, _ in self.events if what == "run" and t > ns
        ]

    def stops_after(self, ns: int) -> list[tuple[int, str, str, str]]:
        return [
            (t, pod, sid, g) for t, pod, what, sid, g, _ in self.events if what == "stop" and t > ns
        ]


class Cluster:
    def __init__(self, tmp: Path, server: RedisServer, clip: Path, units: int) -> None:
        self.units = units  # registered by ``register`` (streams x groups)
        self.tmp = tmp
        self.server = server
        self.clip = clip
        self.log_path = tmp / "units.log"
        self.members: dict[str, Member] = {}
        self.redis = redis.Redis(port=server.port)
        self.hooks = Hooks(HOOK_SECRET)  # every member's webhook receiver: what a user is sent

    def add(self, name: str, redis_url: str | None = None) -> Member:
        m = Member(
            self.tmp,
            redis_url or self.server.url,
            name,
            self.log_path,
            AVMON_WEBHOOK_URLS=self.hooks.url,
            AVMON_WEBHOOK_SECRET=HOOK_SECRET,
        )
        self.members[name] = m
        return m

    def register(self, n: int) -> list[str]:
        first = next(iter(self.members.values()))
        ids = []
        for i in range(n):
            status, body = first.request(
                "POST", "/api/v1/streams", {"name": f"cam-{i}", "url": str(self.clip), "loop": True}
            )
            assert status == 201, body
            ids.append(body["id"])
        return ids

    def owners(self) -> dict[tuple[str, str], str]:
        out = {}
        for name, value in self.redis.hgetall(keys.LEASES).items():
            sid, _, group = name.decode().partition("|")
            out[(sid, group)] = value.decode().rsplit("|", 2)[0]
        return out

    def per_member(self) -> Counter[str]:
        return Counter(self.owners().values())

    def balanced(self, names: list[str]) -> bool:
        owners = self.owners()
        if len(owners) != self.units or set(owners.values()) - set(names):
            return False
        counts = [self.per_member()[n] for n in names]
        return max(counts) - min(counts) <= 1

    def log(self) -> UnitLog:
        return UnitLog.read(self.log_path)

    def logs_about(self, text: str) -> str:
        """Every member's log lines that mention ``text`` (a stream id): printed with a
        failure, they tell which member did what with the stream, and when."""
        lines = [
            f"{name}: {line}"
            for name, m in self.members.items()
            for line in m.log.read_text(errors="replace").splitlines()
            if text in line
        ]
        return "\n".join(sorted(lines, key=lambda x: x.partition(": ")[2]))

    def stop(self) -> None:
        for m in self.members.values():
            if m.proc.poll() is None:
                m.stop()
        self.hooks.close()


def now_ns() -> int:
    return time.monotonic_ns()


def cluster_env() -> dict[str, str]:
    return dict(os.environ)
