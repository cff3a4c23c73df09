"""Deleting a stream with an alarm open ends the alarm (issue 12): a receiver is never
left with an open defect that nothing will close. In every mode -- one process, worker
processes, a cluster (where the close commits under the unit's lease, before the purge)
-- the receiver (verified with the standardwebhooks library) gets the one close, same
defect id, saying why; nothing of the stream is left open in the API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import HOOK_SECRET, Cluster, RedisServer
from tests.integration.live_http import LiveHttpSource
from tests.integration.service_proc import Hooks, Service, wait_for


@pytest.fixture
def source(black_feed: LiveHttpSource) -> LiveHttpSource:
    return black_feed


def _delete_mid_alarm(api: Any, hooks: Hooks, source: LiveHttpSource) -> None:
    status, stream = api.request(
        "POST", "/api/v1/streams", {"name": "live", "url": source.url, "detectors": ["black"]}
    )
    assert status == 201, stream
    assert wait_for(lambda: hooks.bodies, 20), "the black never opened"
    assert api.request("DELETE", f"/api/v1/streams/{stream['id']}")[0] == 204
    assert wait_for(lambda: len(hooks.bodies) >= 2, 5), "no close after the deletion"
    time.sleep(1.0)  # a second close would arrive by now
    assert time.time() < source.started + 18.0, "too slow: the black ended by itself"
    events = [e for _, e in hooks.verified(HOOK_SECRET)]
    assert [e["kind"] for e in events] == ["open", "close"], events
    opened, closed = (e["defect"] for e in events)
    assert opened["id"] == closed["id"]
    assert closed["details"]["closed_because"] == "stream deleted", closed
    assert closed["ended_at"] is not None and closed["end"] > opened["start"]
    assert api.request("GET", "/api/v1/defects?open=true")[1] == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_deleting_a_stream_closes_its_open_alarm(
    tmp_path: Path, source: LiveHttpSource, workers: str
) -> None:
    hooks = Hooks(HOOK_SECRET)
    service = Service(
        tmp_path,
        AVMON_WORKERS=workers,
        AVMON_WEBHOOK_URLS=hooks.url,
        AVMON_WEBHOOK_SECRET=HOOK_SECRET,
    )
    try:
        _delete_mid_alarm(service, hooks, source)
    finally:
        service.stop()
        hooks.close()


def test_deleting_a_stream_closes_its_open_alarm_in_a_cluster(
    tmp_path: Path, redis_server: RedisServer, source: LiveHttpSource
) -> None:
    cluster = Cluster(tmp_path, redis_server, Path("unused"), units=0)
    try:
        cluster.add("m1")
        _delete_mid_alarm(cluster.members["m1"], cluster.hooks, source)
    finally:
        cluster.stop()
