"""Events kept by the members that committed them, against a real redis-server and a real
HTTP receiver: after Redis restarts empty, what the lost log held arrives in its original
order even when the members re-stage their parts at different times; and a write for a
unit whose lease Redis lost is queued for the owner's claim, not refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.coordination import keys
from service.events.delivery import Dispatcher
from service.events.event_log import RedisEventLog
from service.events.kept import EventKeeper
from service.events.model import DefectRecord
from service.events.redis_store import RedisDefectStore
from tests.integration.cluster import HOOK_SECRET, RedisServer
from tests.integration.service_proc import Hooks, wait_for


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    server = RedisServer(tmp_path)
    yield redis.Redis(port=server.port)
    server.stop()


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
