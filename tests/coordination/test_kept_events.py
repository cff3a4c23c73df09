"""Events kept by the members that committed them, against a real redis-server and a real
HTTP receiver: after Redis restarts empty, what the lost log held arrives in its original
order even when the members re-stage their parts at different times; and a write for a
unit whose lease Redis lost is queued for the owner's claim, not refused, and commits
before the owner hands the unit over."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from service.coordination import keys
from service.coordination.assignment import Unit
from service.coordination.cluster import Coordinator, UnitHost
from service.events.delivery import Dispatcher
from service.events.event_log import RedisEventLog
from service.events.kept import EventKeeper
from service.events.model import DefectRecord
from service.events.redis_store import RedisDefectStore
from tests.integration.cluster import HOOK_SECRET
from tests.integration.service_proc import Hooks, wait_for


def _record(epoch: int) -> DefectRecord:
    return DefectRecord(
        stream_id="s1",
        stream_name="one",
        type="black",
        group="video",
        start=1.0,
        severity="critical",
        details={},
        started_at=time.time(),
        epoch=epoch,
    )


def _lease(r: redis.Redis, owner: str, epoch: int) -> None:
    r.hset(keys.LEASES, "s1|video", f"{owner}|{epoch}|{int(time.time() * 1000) + 60_000}")


def test_a_lost_log_is_delivered_in_its_order_whoever_re_stages_first(
    client: redis.Redis,
) -> None:
    """m1 committed the open, m2 (its successor) the close; no receiver had either when
    Redis lost them. m2 notices first and m1 a second later (within the recovery
    window): the receiver still gets the open first, each once, with its original id."""
    hooks = Hooks()
    receiver = keys.webhook_receiver(hooks.url)
    keepers = {m: EventKeeper(client, [receiver]) for m in ("m1", "m2")}
    stores = {m: RedisDefectStore(client, m, 100, keepers[m]) for m in keepers}
    record = _record(epoch=1)
    _lease(client, "m1", 1)
    assert stores["m1"].put(record, kind="open")
    record.ended_at, record.end, record.epoch = time.time(), 2.0, 2
    _lease(client, "m2", 2)
    assert stores["m2"].put(record, kind="close")
    ids = [e[0].decode() for e in client.xrange(keys.EVENT_LOG)]
    assert len(keepers["m1"]) == len(keepers["m2"]) == 1

    client.flushall()  # Redis restarted empty
    dispatcher = Dispatcher(RedisEventLog(client), [hooks.url], HOOK_SECRET, "m3")
    dispatcher.start()
    try:
        keepers["m2"].sync()
        time.sleep(1.0)  # m2's part is staged: a holder must not deliver it yet
        keepers["m1"].sync()
        assert wait_for(lambda: len(hooks.bodies) >= 2, 15), hooks.bodies
        time.sleep(0.5)
    finally:
        dispatcher.stop(2.0)
        hooks.close()
    kinds = [json.loads(b)["kind"] for b in hooks.bodies]
    assert kinds == ["open", "close"], kinds
    assert [h["webhook-id"] for h in hooks.headers] == ids
    for keeper in keepers.values():  # delivered: the copies go
        keeper.sync()
    assert len(keepers["m1"]) == len(keepers["m2"]) == 0


def test_a_write_for_a_unit_with_no_lease_is_queued_for_the_owners_claim(
    client: redis.Redis,
) -> None:
    store = RedisDefectStore(client, "m1", 100)
    record = _record(epoch=1)
    _lease(client, "m1", 1)
    assert store.put(record, kind="open")
    client.flushall()  # Redis restarted empty; the owner has not claimed again yet
    record.ended_at, record.end = time.time(), 2.0
    assert not store.put(record, kind="close")
    assert store.pending == 1 and store.rejected == 0  # held, not refused
    _lease(client, "m1", 7)  # the owner's claim in place...
    store.rebase("s1", "video", 1, 7)  # ...moves what it queued to the new epoch
    assert store.flush() == 1
    stored = store.get(record.id)
    assert stored is not None and not stored.open and store.rejected == 0
    assert [json.loads(e[1][b"event"])["kind"] for e in client.xrange(keys.EVENT_LOG)] == ["close"]


class StoreHost(UnitHost):
    """The parts of ClusterHost this needs: runs nothing, owns a real defect store."""

    def __init__(self, store: RedisDefectStore) -> None:
        self.store = store

    def set_units(self, stream_id: str, spec: dict[str, Any], epochs: dict[str, int]) -> None:
        pass

    def reclaimed(self, unit: Unit, old_epoch: int, new_epoch: int) -> None:
        self.store.rebase(unit.stream_id, unit.group, old_epoch, new_epoch)

    def commit_queued(self) -> None:
        self.store.flush()

    def publish(self) -> None:
        self.store.flush()


def _member(r: redis.Redis, name: str) -> None:
    r.zadd(keys.MEMBERS, {name: int(time.time() * 1000) + 60_000})
    r.hset(keys.MEMBER_INFO, name, json.dumps({"ready": True, "units": 0, "load": 0}))


def test_a_close_held_through_an_empty_restart_commits_before_its_unit_is_handed_over(
    client: redis.Redis,
) -> None:
    """Redis comes back empty; in one tick the owner claims its units again and (a second
    member being there) starts handing one over, released on m2's answer. The close it
    held for that unit must commit before the release, under its lease: after it, the
    fence refuses it for good and the receiver's defect stays open (found by the chaos
    soak, seed 1)."""
    for sid in ("s1", "s2"):
        client.hset(keys.STREAMS, sid, json.dumps({"name": sid, "groups": ["video"]}))
    client.incr(keys.REGISTRY_VERSION)
    _member(client, "m2")
    client.hset(keys.MEMBER_INFO, "m2", json.dumps({"ready": False}))  # not yet ready
    store = RedisDefectStore(client, "m1", 100)
    coordinator = Coordinator(client, "m1", StoreHost(store), lease_ttl=3.0)
    coordinator.tick()
    records = {}
    for sid in ("s1", "s2"):
        records[sid] = _record(epoch=coordinator.epoch_of(sid, "video") or 0)
        records[sid].stream_id = sid
        assert store.put(records[sid], kind="open")
    time.sleep(0.6)  # membership settled
    client.flushall()  # Redis restarted empty while both defects ended
    for record in records.values():
        record.ended_at, record.end = time.time(), 2.0
        assert not store.put(record, kind="close")  # held: no lease yet
    _member(client, "m2")  # m2 is back (and ready) before m1's next tick
    coordinator.tick()  # claims both again, asks m2 to warm up for one
    asked = client.hgetall(keys.WARM)
    assert len(asked) == 1, asked
    for field, value in asked.items():  # m2 answers as a member does: it has media
        client.hset(keys.WARMED, field, value)
    coordinator.tick()
    handed = [sid for sid in records if coordinator.epoch_of(sid, "video") is None]
    assert len(handed) == 1, handed  # one unit went to m2
    assert store.pending == 0 and store.rejected == 0
    for record in records.values():
        stored = store.get(record.id)
        assert stored is not None and not stored.open, stored
