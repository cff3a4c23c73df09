"""Cluster membership, unit assignment and fenced leases over Redis (cluster mode).

Each member runs one coordinator thread that ticks every ``TICK_S``:
1. heartbeat (a member entry that expires after ``lease_ttl`` on Redis' clock);
2. renew its leases in one fenced call; units taken by someone else stop at once;
3. compute the sticky, capped assignment from the registry, the live ready members and
   the current owners, then claim free units assigned to it (an atomic claim issues a
   fencing epoch) and hand over its excess (stop locally first, then release).

Failure rules (DESIGN.md section 6):
- A unit stops at its own monotonic deadline (last renew + TTL - margin) only if the
  member itself was not running (paused) or Redis answered that the lease is gone. When
  Redis is unreachable nobody can claim, so the member keeps monitoring what it owns and
  re-validates its leases when Redis returns; for one TTL after that, it claims nothing
  that others held, so they can renew first (zero moves after an outage).
- Membership changes are batched: rebalancing waits until the member set has been stable
  for ``SETTLE_S``; orphans are claimed at once.
- Handoff is directed: a member giving a unit away (excess on a scale-out, or everything
  on SIGTERM) releases it *reserved* for the successor its assignment chose, and only that
  member may claim it until the reservation ends (one TTL). Members act on snapshots a
  tick apart; without this, another old member could take a unit meant for a newcomer.
- Make-before-break: before releasing a unit (excess or SIGTERM), the owner asks its
  successor to warm up (``WARM``): the successor analyses the stream without committing
  and answers (``WARMED``) once it has media, saying from when; only once its own runner
  has analysed up to then does the owner stop the unit and release it, with the runs it
  saw begin (``handed``). The successor's runner then takes the unit over with its state
  already built, so no input goes unwatched and a short defect straddling the handoff is
  still raised once. An owner that gets no answer (or cannot catch up) within
  ``WARM_WAIT_S`` releases anyway (a blind window, as without warming).
- SIGTERM: ``leave()`` marks the member not ready, hands each unit over as above (waiting
  at most ``WARM_WAIT_S``), releases what is left and wakes the others through pub/sub.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from service.coordination import keys
from service.coordination.assignment import Unit, assign
from service.coordination.scripts import CLAIM, PURGE_STREAM, RELEASE, RENEW
from service.observability import metrics

log = logging.getLogger(__name__)

TICK_S = 0.2
SETTLE_S = 0.5
MARGIN_S = 0.5
# How long an owner waits for a successor to have media before releasing anyway: a
# connect plus a 2 s GOP (a decoder's first picture is the next keyframe). G2's 3 s for a
# process to exit after SIGTERM holds when successors have media within about 2.5 s.
WARM_WAIT_S = 2.5

HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Dead members leave nothing behind: their info goes with their membership.
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then redis.call('HDEL', KEYS[2], unpack(dead)) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local info = {}
if #live > 0 then info = redis.call('HMGET', KEYS[2], unpack(live)) end
return {now, live, info}
"""


@dataclass
class Owned:
    epoch: int
    deadline: float  # monotonic: stop by then unless renewed (or Redis is down)


class UnitHost:
    """What the coordinator drives: start/stop units of streams in this process."""

    def set_units(self, stream_id: str, spec: dict[str, Any], epochs: dict[str, int]) -> None:
        raise NotImplementedError

    def load(self) -> float:
        return 0.0

    def publish(self) -> None:
        """Called after every successful sync: share local status through Redis."""

    def reclaimed(self, unit: Unit, old_epoch: int, new_epoch: int) -> None:
        """Redis lost the lease while this member kept running the unit (it came back
        empty): the unit continues under ``new_epoch``."""

    def commit_queued(self) -> None:
        """Commit the writes queued during an outage, while this member still holds
        the units they belong to (called before it releases one)."""

    def warm(self, stream_id: str, spec: dict[str, Any], groups: list[str]) -> float | None:
        """Analyse the stream for ``groups`` without committing, ahead of a handoff to
        this member; once it has media, the wall clock its media starts at (0: none
        to wait for), None until then."""
        return 0.0

    def analysed_to(self, unit: Unit, wall: float) -> bool:
        """Has the unit's runner here analysed the media that arrived by ``wall``?"""
        return True

    def cool(self, keep: set[str]) -> None:
        """Stop warming up the streams not in ``keep``."""

    def handed_out(self, unit: Unit) -> list[Any]:
        """The unit's runs seen begin here and not raised yet (JSON-able), for its next
        owner; called once the unit stopped here."""
        return []


class Coordinator:
    def __init__(
        self,
        client: redis.Redis,
        pod: str,
        host: UnitHost,
        lease_ttl: float = 3.0,
        max_units: int | None = None,
        unit_log: str | None = None,
        on_redis_back: Callable[[], None] | None = None,
    ) -> None:
        self.r = client
        self.pod = pod
        self.host = host
        self.ttl = lease_ttl
        self.ttl_ms = int(lease_ttl * 1000)
        self.max_units = max_units
        self.unit_log = Path(unit_log) if unit_log else None
        self.on_redis_back = on_redis_back or (lambda: None)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._claim = client.register_script(CLAIM)
        self._renew = client.register_script(RENEW)
        self._release_script = client.register_script(RELEASE)
        self._purge = client.register_script(PURGE_STREAM)
        self.owned: dict[Unit, Owned] = {}
        self.registry: dict[str, dict[str, Any]] = {}
        self._registry_version: Any = object()  # never equal: the first tick reads it
        self.members: dict[str, dict[str, Any]] = {}
        self.leases: dict[Unit, tuple[str, int, int]] = {}  # owner, epoch, expires_ms
        self.reserved: dict[Unit, tuple[str, int]] = {}  # successor, until_ms (Redis clock)
        self.warm_asked: dict[Unit, str] = {}  # unit -> successor asked to warm up
        # unit -> (successor that has media, wall clock its media starts at)
        self.warm_ready: dict[Unit, tuple[str, float]] = {}
        self.handing: dict[Unit, tuple[str, float]] = {}  # mine: successor, give up at
        self.redis_ok = False
        self._outage_until = 0.0  # after an outage: claim nothing others held until then
        self._synced_once = False
        self._members_changed = time.monotonic()
        self._last_tick = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.leaving = False
        self._thread: threading.Thread | None = None
        self._pubsub_thread: threading.Thread | None = None
        self.generation: int | None = None
        self._unsettled: set[str] = set()  # streams whose runner change failed
        # Units this process stopped during this tick -> their successor (None: free).
        self._let_go: dict[Unit, str | None] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="coordinator", daemon=True)
        self._thread.start()
        self._pubsub_thread = threading.Thread(target=self._listen, name="handoff", daemon=True)
        self._pubsub_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def leave(self) -> None:
        """Graceful exit: hand every unit to a successor (warmed up first, for at most
        ``WARM_WAIT_S``), then leave the member set."""
        self.leaving = True
        self._wake.set()
        deadline = time.monotonic() + WARM_WAIT_S + 2 * TICK_S
        alive = self._thread is not None and self._thread.is_alive()
        while alive and self.owned and time.monotonic() < deadline and self.redis_ok:
            time.sleep(TICK_S / 4)  # the loop hands units over as successors warm up
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self._heartbeat(
                keys=[keys.MEMBERS, keys.MEMBER_INFO], args=[self.pod, self.ttl_ms, "0", ""]
            )
        except redis.RedisError:
            log.warning("could not leave the member set (Redis unreachable)")
        successors = self._successors_after_me()
        self._hand_off([(unit, successors.get(unit)) for unit in sorted(self.owned)])
        with contextlib.suppress(redis.RedisError):
            self.r.publish(keys.HANDOFF, self.pod)

    def _successors_after_me(self) -> dict[Unit, str]:
        """Who takes each of my units when I leave: the assignment without me."""
        others = [m for m, i in self.members.items() if i.get("ready") and m != self.pod]
        if not others:
            return {}
        units = self._units()
        current = {u: o for u, (o, _, _) in self.leases.items() if o in others}
        return {u: m for u, m in assign(units, others, current).items() if u in self.owned}

    def _units(self) -> list[Unit]:
        return [Unit(sid, g) for sid, spec in self.registry.items() for g in spec.get("groups", [])]

    def wake(self) -> None:
        """Run the next tick now (the registry changed)."""
        self._wake.set()

    @property
    def ready(self) -> bool:
        return self.redis_ok and not self.leaving

    def epoch_of(self, stream_id: str, group: str) -> int | None:
        owned = self.owned.get(Unit(stream_id, group))
        return owned.epoch if owned else None

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("coordinator tick failed")
            self._wake.wait(max(0.0, TICK_S - (time.monotonic() - started)))
            self._wake.clear()

    def _listen(self) -> None:
        """Wake the loop at once when another member hands units over."""
        while not self._stop.is_set():
            try:
                pubsub = self.r.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8
                pubsub.subscribe(keys.HANDOFF)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is not None:
                        self._wake.set()
            except redis.RedisError:
                self._stop.wait(0.5)

    def tick(self) -> None:
        now = time.monotonic()
        # Paused = this loop did not run (SIGSTOP, a stall) for most of a lease, measured
        # from the end of the last tick: a tick slowed by Redis calls timing out is an
        # outage, handled below, not a pause.
        paused = now - self._last_tick > self.ttl - MARGIN_S
        try:
            self._tick(now, paused)
        finally:
            self._last_tick = time.monotonic()

    def _tick(self, now: float, paused: bool) -> None:
        if paused:
            # This process did not run for a lease's length (SIGSTOP, a stall): its
            # leases may be someone else's now. Stop what is past its deadline first.
            for unit, own in list(self.owned.items()):
                if now > own.deadline:
                    log.warning("paused past the deadline of %s: stopping it", unit)
                    self._drop(unit, release=False)
        try:
            self._sync(now)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if self.redis_ok:
                log.warning("Redis unreachable (%s): keeping %d units", exc, len(self.owned))
            self.redis_ok = False
            metrics.LEASE_RENEW_FAILURES.inc()
            after = time.monotonic()
            for own in self.owned.values():
                own.deadline = after + self.ttl - MARGIN_S  # nobody can claim meanwhile

    def _sync(self, now: float) -> None:
        t0 = time.perf_counter()
        self._let_go.clear()
        info = json.dumps(
            {"ready": not self.leaving, "units": len(self.owned), "load": self.host.load()}
        )
        server_ms, live, infos = self._heartbeat(
            keys=[keys.MEMBERS, keys.MEMBER_INFO], args=[self.pod, self.ttl_ms, "1", info]
        )
        metrics.REDIS_LATENCY.observe(time.perf_counter() - t0)
        if not self.redis_ok:
            # Back from an outage: others may not have renewed yet; give them one TTL.
            if self._synced_once:  # an outage, not this member's first contact
                self._outage_until = now + self.ttl
            self._synced_once = True
            self.redis_ok = True
            self.on_redis_back()
        members = {}
        for member, raw in zip(live, infos, strict=True):
            name = member.decode() if isinstance(member, bytes) else str(member)
            members[name] = json.loads(raw) if raw else {"ready": False}
        if set(members) != set(self.members):
            self._members_changed = now
        self.members = members
        pipe = self.r.pipeline(transaction=False)
        pipe.get(keys.REGISTRY_VERSION)
        pipe.hgetall(keys.LEASES)
        pipe.hgetall(keys.RESERVED)
        pipe.hgetall(keys.WARM)
        pipe.hgetall(keys.WARMED)
        version, raw_leases, raw_reserved, raw_warm, raw_warmed = pipe.execute()
        if version is None and self.registry:
            self._restore_registry()
            version = self.r.get(keys.REGISTRY_VERSION)
        if version != self._registry_version:
            streams = self.r.hgetall(keys.STREAMS)
            self.registry = {}
            for k, v in streams.items():
                try:
                    doc = json.loads(v)
                    if isinstance(doc, dict) and isinstance(doc.get("groups", []), list):
                        self.registry[_s(k)] = doc
                        continue
                except ValueError:
                    pass
                log.warning("malformed stream entry %r skipped", _s(k))
            self._registry_version = version
        self.leases = {}
        for field, value in raw_leases.items():
            sid, _, group = _s(field).partition("|")
            try:
                owner, epoch, expires = _s(value).rsplit("|", 2)
                self.leases[Unit(sid, group)] = (owner, int(epoch), int(expires))
            except ValueError:
                # Skipped, never fatal: one bad value must not stop every member's ticks.
                # (The Lua scripts treat it as no lease; a claim overwrites it.)
                log.warning("malformed lease %r = %r: skipped", _s(field), _s(value)[:80])
        self.reserved = {}
        ended = []
        for field, value in raw_reserved.items():
            sid, _, group = _s(field).partition("|")
            who, _, until = _s(value).rpartition("|")
            if until.isdigit() and int(until) > int(server_ms):
                self.reserved[Unit(sid, group)] = (who, int(until))
            else:
                ended.append(field)  # run out, never claimed (stream deleted), or malformed
        if ended:
            self.r.hdel(keys.RESERVED, *ended)
        self.warm_asked = self._unexpired(keys.WARM, raw_warm, int(server_ms))
        self.warm_ready = {
            u: _who_since(v)
            for u, v in self._unexpired(keys.WARMED, raw_warmed, int(server_ms)).items()
        }
        self._renew_all(now)
        for stream_id in list(self._unsettled):
            self._republish(stream_id)
        self._warm_up(int(server_ms))
        self._finish_handoffs(now)
        if self.leaving:
            self._hand_over_all(now, int(server_ms))
        self._rebalance(now, int(server_ms))
        metrics.UNITS_OWNED.set(len(self.owned))
        self.host.publish()

    def _restore_registry(self) -> None:
        """Redis came back empty (restarted without persistence): put back the registry
        every member still holds in memory, so monitoring resumes without operators."""
        log.warning("Redis lost its data: restoring %d streams", len(self.registry))
        pipe = self.r.pipeline()
        for sid, doc in self.registry.items():
            pipe.hsetnx(keys.STREAMS, sid, json.dumps(doc))
            pipe.hsetnx(keys.NAMES, doc["name"], sid)
        pipe.incr(keys.REGISTRY_VERSION)
        pipe.incr(keys.GENERATION)
        pipe.execute()

    def _renew_all(self, now: float) -> None:
        units = sorted(self.owned)
        if not units:
            return
        args: list[Any] = [self.pod, self.ttl_ms]
        for u in units:
            args += [keys.unit_field(u.stream_id, u.group), self.owned[u].epoch]
        codes = self._renew(keys=[keys.LEASES], args=args)
        for unit, raw in zip(units, codes, strict=True):
            code = int(raw)
            if code == 1:
                self.owned[unit].deadline = now + self.ttl - MARGIN_S
            elif code == 0:
                # The lease vanished (Redis restarted empty): claim it again in place,
                # and give the others one TTL to do the same before claiming free units.
                self._outage_until = max(self._outage_until, now + self.ttl)
                old = self.owned[unit].epoch
                epoch = self._claim_one(unit)
                if epoch is None:
                    log.warning("lease of %s lost and claimed by another: stopping it", unit)
                    self._drop(unit, release=False)
                else:
                    self.owned[unit] = Owned(epoch, now + self.ttl - MARGIN_S)
                    # Nobody else held it meanwhile: what this member queued under the
                    # old epoch is still its own to commit, under the new one.
                    self.host.reclaimed(unit, old, epoch)
                    self._republish(unit.stream_id)
            else:
                metrics.LEASE_RENEW_FAILURES.inc()
                log.warning("lease of %s taken over: stopping it", unit)
                self._drop(unit, release=False)

    def _rebalance(self, now: float, server_ms: int) -> None:
        if self.leaving:
            return
        units = self._units()
        wanted = set(units)
        # Streams deleted from the registry: stop them here (their leases are released).
        for unit in [u for u in self.owned if u not in wanted]:
            log.info("%s is no longer registered: stopping it, its defects purged", unit)
            self._drop(unit, release=True, purge=True)
        ready = sorted(m for m, i in self.members.items() if i.get("ready"))
        if self.pod not in ready:
            ready.append(self.pod)
        current: dict[Unit, str] = {}
        for unit in units:
            lease = self.leases.get(unit)
            if lease is None:
                continue
            owner, _, expires = lease
            # An expired lease still belongs to a live owner: it will renew it.
            if expires > server_ms or owner in self.members:
                current[unit] = owner
        for unit, (heir, _) in self.reserved.items():
            # Released and reserved for its successor, not claimed yet: the giver's choice
            # stands in every member's plans too. Planned as an orphan, it went to whoever
            # ranked first -- the successor claimed it and handed it on (a ping-pong
            # between the old members after a pod deletion, counted as scale-out moves).
            if unit not in current and heir in self.members:
                current[unit] = heir
        for unit, (heir, _) in self.handing.items():
            # Being handed over: already the successor's for this member's plans, or a
            # changed snapshot would have it shed other units on top (and move too many).
            if unit in current and heir in self.members:
                current[unit] = heir
        for unit, gone_to in self._let_go.items():
            # Released during this tick, after the snapshot was read: the same holds (it
            # made a member shed a stream more than its excess: 8 of 18 units moved).
            if gone_to in self.members:
                current[unit] = gone_to
            else:
                current.pop(unit, None)
        metrics.UNITS_UNOWNED.set(sum(1 for u in units if u not in current))
        caps = {self.pod: self.max_units}
        target = assign(units, ready, current, caps)
        settled = now - self._members_changed >= SETTLE_S
        after_outage = now < self._outage_until
        to_claim: list[Unit] = []
        for unit in units:
            if unit in self.owned or current.get(unit) not in (None, self.pod):
                continue  # mine already, or its owner releases it first
            successor = self.reserved.get(unit, (None, 0))[0]
            if successor is not None:
                # Handed over: the giver's choice stands, whatever this snapshot says.
                if successor == self.pod and (
                    self.max_units is None or len(self.owned) + len(to_claim) < self.max_units
                ):
                    to_claim.append(unit)
                continue
            if target.get(unit) != self.pod:
                continue
            lease = self.leases.get(unit)
            if after_outage and (lease is None or lease[0] != self.pod):
                # For one TTL after an outage, claim nothing free: Redis may have come
                # back empty, and free units then are others' until they renew in place.
                continue
            to_claim.append(unit)
        if to_claim:
            self._claim_units(to_claim, now)
        self._release_orphaned(target)
        if settled:
            excess = [u for u in self.owned if target.get(u) not in (self.pod, None)]
            if excess and not all(u in self.handing for u in excess):
                # What this member saw when it chose to shed (a move between old members
                # on a scale-out is read from here).
                log.info(
                    "shedding %d of %d units: held by member %s, assigned %s",
                    len(excess), len(self.owned),
                    dict(sorted(Counter(current.values()).items())),
                    dict(sorted(Counter(target.values()).items())),
                )  # fmt: skip
            for unit in excess:
                self._hand_over(unit, target[unit], now, server_ms)

    def _release_orphaned(self, target: dict[Unit, str]) -> None:
        """Leases under my name that this process does not hold (its previous
        incarnation's: a container restarted under its pod's name) and that my
        assignment gives to another member: release them to it. Nobody else would, as
        an owner that is live renews its expired leases (after a Redis pause)."""
        for unit, (owner, epoch, _) in self.leases.items():
            heir = target.get(unit)
            if owner != self.pod or unit in self.owned or heir in (None, self.pod):
                continue
            if unit in self._let_go:
                continue  # this process held it until this tick (the snapshot predates that)
            log.info("releasing %s, held by my previous process, to %s", unit, heir)
            field = keys.unit_field(unit.stream_id, unit.group)
            with contextlib.suppress(redis.RedisError):
                self._release_script(
                    keys=[keys.LEASES, keys.RESERVED],
                    args=[self.pod, self.ttl_ms, field, epoch, heir],
                )

    # ------------------------------------------------------------------ handoff
    def _unexpired(self, key: str, raw: dict[Any, Any], server_ms: int) -> dict[Unit, str]:
        out: dict[Unit, str] = {}
        stale = []
        for field, value in raw.items():
            sid, _, group = _s(field).partition("|")
            who, _, until = _s(value).rpartition("|")
            if until.isdigit() and int(until) > server_ms:
                out[Unit(sid, group)] = who
            else:
                stale.append(field)  # the handoff ended without cleaning up (a crash)
        if stale:
            self.r.hdel(key, *stale)
        return out

    def _hand_over(self, unit: Unit, successor: str, now: float, server_ms: int) -> None:
        """Ask ``successor`` to warm up for ``unit``; released once it has media."""
        if unit in self.handing:
            return
        log.info("handing %s to %s", unit, successor)
        until = server_ms + int(WARM_WAIT_S * 1000) + self.ttl_ms
        self.r.hset(keys.WARM, keys.unit_field(unit.stream_id, unit.group), f"{successor}|{until}")
        self.handing[unit] = (successor, now + WARM_WAIT_S)
        self.r.publish(keys.HANDOFF, self.pod)

    def _finish_handoffs(self, now: float) -> None:
        """Release the units whose successor is warm (or has had long enough); call off
        those whose successor left."""
        ready: list[tuple[Unit, str | None]] = []
        done: list[str] = []
        for unit, (successor, give_up) in list(self.handing.items()):
            if unit not in self.owned:
                del self.handing[unit]
            elif (seamless := self._ready_for(unit, successor)) or now > give_up:
                if not seamless:
                    warm = self.warm_ready.get(unit, ("",))[0] == successor
                    why = "my analysis behind its media" if warm else f"{successor} not warm"
                    log.warning("%s: %s in time: releasing", unit, why)
                del self.handing[unit]
                ready.append((unit, successor))
            elif not self.members.get(successor, {}).get("ready"):
                del self.handing[unit]  # it left: the next assignment picks another
            else:
                continue
            done.append(keys.unit_field(unit.stream_id, unit.group))
        if ready:
            self._hand_off(ready)
            metrics.REBALANCES.inc(len(ready))
        if done:
            # Only now, all at once: a successor that saw some of a stream's asks gone
            # before the release would warm up again for the rest, dropping the runner
            # it had warmed for the whole (then start cold at the claim).
            pipe = self.r.pipeline(transaction=True)
            pipe.hdel(keys.WARM, *done)
            pipe.hdel(keys.WARMED, *done)
            pipe.execute()
        if ready:
            self.r.publish(keys.HANDOFF, self.pod)

    def _ready_for(self, unit: Unit, successor: str) -> bool:
        """``successor`` has media, and my runner analysed everything before it: the
        make-before-break seam. A runner behind the live edge (a busy member) that
        stopped at the successor's answer would leave unwatched the media in between --
        a short defect there would be lost."""
        ready = self.warm_ready.get(unit)
        return ready is not None and ready[0] == successor and self.host.analysed_to(unit, ready[1])

    def _hand_over_all(self, now: float, server_ms: int) -> None:
        """Leaving: every unit to its successor, warmed up first where there is one."""
        successors = self._successors_after_me()
        for unit in sorted(u for u in self.owned if u not in self.handing and u in successors):
            self._hand_over(unit, successors[unit], now, server_ms)
        self._hand_off([(u, None) for u in sorted(self.owned) if u not in successors])

    def _warm_up(self, server_ms: int) -> None:
        """Successor side: analyse the streams whose units are coming here, and say so
        once that has media."""
        coming: dict[str, set[str]] = {}
        for unit, who in self.warm_asked.items():
            if who == self.pod and unit not in self.owned and unit.stream_id in self.registry:
                coming.setdefault(unit.stream_id, set()).add(unit.group)
        answered = False
        for sid, groups in coming.items():
            mine = {u.group for u in self.owned if u.stream_id == sid}
            since = self.host.warm(sid, self.registry[sid], sorted(groups | mine))
            if since is None:
                continue
            until = server_ms + int(WARM_WAIT_S * 1000) + self.ttl_ms
            fields: dict[Any, Any] = {  # (redis-py types mappings invariantly)
                keys.unit_field(sid, group): f"{self.pod}|{int(since * 1000)}|{until}"
                for group in groups
                if self.warm_ready.get(Unit(sid, group), ("",))[0] != self.pod
            }
            if fields:  # one write per stream: the giver sees all of its units warm, or none
                self.r.hset(keys.WARMED, mapping=fields)
                answered = True
        # Keep what was released to me meanwhile: the claim (later in this tick) uses it.
        claiming = {u.stream_id for u, (who, _) in self.reserved.items() if who == self.pod}
        self.host.cool(set(coming) | claiming)
        if answered:
            self.r.publish(keys.HANDOFF, self.pod)

    # ------------------------------------------------------------------ units
    def _claim_one(self, unit: Unit) -> int | None:
        res = self._claim(
            keys=[keys.LEASES, keys.LAST, keys.EPOCH, keys.RESERVED],
            args=[self.pod, self.ttl_ms, keys.unit_field(unit.stream_id, unit.group)],
        )
        epoch = int(res[0])
        return None if epoch < 0 else epoch

    def _claim_units(self, units: list[Unit], now: float) -> None:
        fields = [keys.unit_field(u.stream_id, u.group) for u in units]
        res = self._claim(
            keys=[keys.LEASES, keys.LAST, keys.EPOCH, keys.RESERVED],
            args=[self.pod, self.ttl_ms, *fields],
        )
        streams: set[str] = set()
        for unit, value in zip(units, res, strict=True):
            epoch = int(value)
            if epoch < 0:
                continue
            self.owned[unit] = Owned(epoch, now + self.ttl - MARGIN_S)
            streams.add(unit.stream_id)
            metrics.REBALANCES.inc()
            self._log("start", unit, epoch)
        for sid in streams:
            self._republish(sid)

    def _drop(
        self, unit: Unit, release: bool, purge: bool = False, successor: str | None = None
    ) -> None:
        """Stop a unit here, then (fenced) release its lease, reserved for ``successor``
        if one is named -- or, for a deleted stream, purge its defects with the lease,
        so cleanup also carries the epoch."""
        if not release or purge:
            own = self.owned.pop(unit, None)
            if own is None:
                return
            self._let_go[unit] = None
            self._republish(unit.stream_id)  # stop locally before anyone else can start
            self._log("stop", unit, own.epoch)
            if purge:
                self._purge_unit(unit, own)
            return
        self._hand_off([(unit, successor)])

    def _hand_off(self, units: list[tuple[Unit, str | None]]) -> None:
        """Stop these units here -- each stream's runner changed once, not once per unit
        -- then release them, each reserved for its successor (if named) with the runs
        it saw begin."""
        stopped = []
        for unit, successor in units:
            own = self.owned.pop(unit, None)
            if own is not None:
                self._let_go[unit] = successor
                # The runs it saw begin (read while it still runs), for the successor.
                runs = self.host.handed_out(unit) if successor else []
                stopped.append((unit, own, successor, runs))
        for stream_id in sorted({unit.stream_id for unit, *_ in stopped}):
            self._republish(stream_id)  # stop locally before anyone else can start
        if not stopped:
            return
        # What this member queued for the units (a close held through an outage) commits
        # now, under its leases: once released, the fence would refuse it for good.
        self.host.commit_queued()
        args: list[Any] = [self.pod, self.ttl_ms]
        try:
            pipe = self.r.pipeline(transaction=False)
            for unit, own, successor, runs in stopped:
                self._log("stop", unit, own.epoch)
                if successor:
                    log.info("releasing %s to %s with pending runs %s", unit, successor, runs)
                if runs:  # before the release: the successor reads them when it claims
                    key = keys.handed(unit.stream_id, unit.group)
                    pipe.set(key, json.dumps(runs), px=2 * self.ttl_ms)
                args += [keys.unit_field(unit.stream_id, unit.group), own.epoch, successor or ""]
            pipe.execute()
            self._release_script(keys=[keys.LEASES, keys.RESERVED], args=args)
        except redis.RedisError:
            log.warning("could not release %d units (they will expire)", len(stopped))

    def _purge_unit(self, unit: Unit, own: Owned) -> None:
        """A deleted stream's unit: its lease and its defects go in one fenced call."""
        self.host.commit_queued()
        try:
            self._purge(
                keys=[
                    keys.LEASES,
                    keys.DEFECTS,
                    keys.DEFECTS_BY_TIME,
                    keys.stream_defects(unit.stream_id),
                    keys.OPEN,
                    keys.LAST,
                ],
                args=[self.pod, keys.unit_field(unit.stream_id, unit.group), own.epoch],
            )
        except redis.RedisError:
            log.warning("could not release %s (it will expire)", unit)

    def _republish(self, stream_id: str) -> None:
        epochs = {u.group: o.epoch for u, o in self.owned.items() if u.stream_id == stream_id}
        spec = self.registry.get(stream_id, {})
        try:
            self.host.set_units(stream_id, spec, epochs)
            self._unsettled.discard(stream_id)
        except Exception:
            # Never hold a lease without running it: try again on the next tick.
            log.exception("could not start or stop the units of %s: retrying", stream_id)
            self._unsettled.add(stream_id)

    def analysing(self, stream_id: str, groups: list[str]) -> None:
        """A runner analysed its first frame: these units run for real (unit log)."""
        for group in groups:
            own = self.owned.get(Unit(stream_id, group))
            if own is not None:
                self._log("run", Unit(stream_id, group), own.epoch)

    def _log(self, what: str, unit: Unit, epoch: int) -> None:
        if self.unit_log is None:
            return
        line = f"{time.monotonic_ns()} {self.pod} {what} {unit.stream_id} {unit.group} {epoch}\n"
        with self.unit_log.open("a") as f:
            f.write(line)


def _who_since(entry: str) -> tuple[str, float]:
    """A warm-up answer, ``member|since_ms``: who has media, from when (wall clock)."""
    who, _, since = entry.partition("|")
    return who, int(since) / 1000 if since.isdigit() else 0.0


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
