"""A member never holds a lease without running the unit: when starting a stream's
runner fails (any exception from the host), the coordinator tries again on its next
ticks. Real redis-server, the real Coordinator, ticks driven by hand."""

from __future__ import annotations

import json
from typing import Any

import redis

from service.coordination import keys
from service.coordination.cluster import Coordinator, UnitHost


class FlakyHost(UnitHost):
    """Fails the first ``failures`` times it is asked to start units."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.running: dict[str, dict[str, int]] = {}

    def set_units(self, stream_id: str, spec: dict[str, Any], epochs: dict[str, int]) -> None:
        if epochs and self.failures > 0:
            self.failures -= 1
            raise RuntimeError("could not open the source's decoder")
        self.running[stream_id] = dict(epochs)


def test_a_failed_runner_start_is_retried_until_the_unit_runs(client: redis.Redis) -> None:
    client.hset(keys.STREAMS, "s1", json.dumps({"name": "cam", "groups": ["video"]}))
    client.incr(keys.REGISTRY_VERSION)
    host = FlakyHost(failures=2)
    coordinator = Coordinator(client, "m1", host, lease_ttl=3.0)
    for _ in range(4):
        coordinator.tick()
    assert coordinator.epoch_of("s1", "video") is not None  # it holds the lease...
    assert host.running == {"s1": {"video": coordinator.epoch_of("s1", "video")}}  # ...and runs it
