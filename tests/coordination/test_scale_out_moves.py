"""A scale-out moves only the newcomer's share, however the members' ticks interleave:
a member that releases units to the newcomer reads the cluster once per tick, before the
release, and must not plan the rest of that tick as if it still held them (it then shed
a stream more than its excess: 8 of 18 units moved on an e2e scale-out). Real
redis-server, real Coordinators, ticks by hand; warm-ups answer at once."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import redis

from service.coordination import keys
from service.coordination.cluster import SETTLE_S, Coordinator
from tests.coordination.test_restarted_member import Host
from tests.coordination.ticks import owners, rounds

GROUPS = ["video", "audio", "sync"]


@pytest.mark.parametrize("seed", [0, 3, 6, 11])  # 6 and 11 moved 8 without the fix
def test_a_scale_out_moves_only_the_newcomers_share(client: redis.Redis, seed: int) -> None:
    # Streams split between the two members in a different way each time (failovers
    # and restarts leave such mixes): 9 units each.
    units = [f"{seed}-s{i}|{g}" for i in range(6) for g in GROUPS]
    held_by = ["m1"] * 9 + ["m2"] * 9
    random.Random(seed).shuffle(held_by)
    now_ms = int(client.time()[0]) * 1000
    for i in range(6):
        doc = {"name": f"cam{i}", "groups": GROUPS}
        client.hset(keys.STREAMS, f"{seed}-s{i}", json.dumps(doc))
    for n, (unit, owner) in enumerate(zip(units, held_by, strict=True)):
        client.hset(keys.LEASES, unit, f"{owner}|{n + 1}|{now_ms + 3000}")
    client.incr(keys.REGISTRY_VERSION)
    old = [Coordinator(client, f"m{i}", Host(), lease_ttl=3.0) for i in (1, 2)]
    rounds(old, 1.0)
    before = owners(client)
    assert sorted(Counter(before.values()).values()) == [9, 9], before
    newcomer = Coordinator(client, "m3", Host(), lease_ttl=3.0)
    rounds([newcomer, *old], SETTLE_S + 2.5)
    after = owners(client)
    moved = {u: (before[u], after[u]) for u in before if after.get(u) != before[u]}
    assert sorted(Counter(after.values()).values()) == [6, 6, 6], after
    assert len(moved) == 6 and {b for _, b in moved.values()} == {"m3"}, moved
