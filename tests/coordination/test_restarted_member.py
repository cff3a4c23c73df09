"""A member killed and restarted under the same name (a container restarted by the
kubelet keeps its pod's name) finds leases under its name that no process holds: the
ones its assignment keeps it claims again, the others it releases to their successor.
Otherwise those units stall for good: the others leave an expired lease to its owner
while the owner is live (it renews after a Redis pause), and the new process, which
never held them, does not renew them. Real redis-server, real Coordinators, ticks by
hand."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from service.coordination import keys
from service.coordination.cluster import Coordinator, UnitHost


class Host(UnitHost):
    def __init__(self) -> None:
        self.running: dict[str, dict[str, int]] = {}

    def set_units(self, stream_id: str, spec: dict[str, Any], epochs: dict[str, int]) -> None:
        if epochs:
            self.running[stream_id] = dict(epochs)
        else:
            self.running.pop(stream_id, None)


def test_a_restarted_member_releases_what_its_old_process_held_beyond_its_share(
    client: redis.Redis,
) -> None:
    streams = [f"s{i}" for i in range(4)]
    for sid in streams:
        client.hset(keys.STREAMS, sid, json.dumps({"name": sid, "groups": ["video"]}))
    client.incr(keys.REGISTRY_VERSION)
    old = Coordinator(client, "m1", Host(), lease_ttl=1.0)
    for _ in range(2):
        old.tick()
    assert len(old.owned) == 4
    # m1 is SIGKILLed before it could shed anything to m2, and restarts at once.
    hosts = {"m2": Host(), "m1": Host()}  # m2 joined just before
    members = [Coordinator(client, name, host, lease_ttl=1.0) for name, host in hosts.items()]
    for _ in range(8):
        for member in members:
            member.tick()
    for _ in range(7):  # past the old leases' expiry: not a matter of waiting
        time.sleep(0.2)
        for member in members:
            member.tick()
    running = {sid: name for name, h in hosts.items() for sid in h.running}
    assert sorted(running) == streams, running  # every unit runs somewhere
    assert sorted(running.values()) == ["m1", "m1", "m2", "m2"]  # and the share moved
    leases = {k.decode(): v.decode().split("|")[0] for k, v in client.hgetall(keys.LEASES).items()}
    assert leases == {f"{sid}|video": running[sid] for sid in streams}
