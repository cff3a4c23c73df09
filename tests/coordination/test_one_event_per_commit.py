"""One open and one close per defect, decided where events are committed: an open of an
open defect or a close of a closed one (a write retried after its reply was lost, two
runners racing at a handoff -- an e2e scale-in delivered ``open, close, close``) is
acknowledged without a second event. Both adapters of the store contract: a real
redis-server (fenced, two owners one after the other) and SQLite."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from service.coordination import keys
from service.events.event_log import RedisEventLog
from service.events.model import DefectRecord
from service.events.redis_store import RedisDefectStore
from service.events.sqlite_store import SqliteStore
from tests.coordination.test_kept_events import _lease, _record


def _kinds(log: Any) -> list[tuple[str, str]]:
    events = [json.loads(e.body) for e in log.after(None, 100, 0.0)]
    return [(e["kind"], e["defect"]["id"]) for e in events]


def _twice_each(put: Any, record: DefectRecord, between: Any = None) -> None:
    assert put(record, "open")
    assert put(record, "open")  # retried: its reply was lost
    record.ended_at, record.end = time.time(), 2.0
    if between is not None:
        between(record)
    assert put(record, "close")
    assert put(record, "close")  # a second runner closing it too


def test_redis_commits_each_kind_once(client: redis.Redis) -> None:
    stores = {m: RedisDefectStore(client, m, 100) for m in ("m1", "m2")}
    owner = ["m1"]
    _lease(client, "m1", 1)

    def put(record: DefectRecord, kind: str) -> bool:
        return stores[owner[0]].put(record, kind=kind)

    def hand_over(record: DefectRecord) -> None:  # the close comes from the next owner
        _lease(client, "m2", 2)
        owner[0], record.epoch = "m2", 2

    record = _record(epoch=1)
    _twice_each(put, record, hand_over)
    assert _kinds(RedisEventLog(client)) == [("open", record.id), ("close", record.id)]
    assert client.sismember(keys.OPEN, record.id) == 0


def test_sqlite_commits_each_kind_once(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), 100)
    record = _record(epoch=0)
    _twice_each(lambda r, kind: store.put(r, kind=kind), record)
    assert _kinds(store) == [("open", record.id), ("close", record.id)]
    stored = store.get(record.id)
    assert stored is not None and not stored.open


@pytest.mark.parametrize("kind", ["open", "close"])
def test_the_first_commit_of_each_kind_still_goes_through(tmp_path: Path, kind: str) -> None:
    store = SqliteStore(str(tmp_path), 100)
    record = _record(epoch=0)
    assert store.put(record, kind="open")
    if kind == "close":
        record.ended_at, record.end = time.time(), 2.0
        assert store.put(record, kind="close")
    assert [k for k, _ in _kinds(store)] == ["open", "close"][: 1 + (kind == "close")]
