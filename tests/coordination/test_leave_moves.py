"""A member that leaves gracefully hands each unit to the successor its own assignment
chose (released *reserved* for it); the others plan with that choice, so its units move
once and nothing else moves. Planned as orphans instead, a reserved unit went to whoever
ranked first in another member's plan: the successor claimed it and handed it on, and
old members traded units back and forth (seen on the e2e after a pod deletion). Real
redis-server, real Coordinators, ticks by hand; warm-ups answer at once."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest
import redis

from service.coordination import keys
from service.coordination.cluster import SETTLE_S, Coordinator
from tests.coordination.test_restarted_member import Host
from tests.coordination.ticks import owners, rounds

GROUPS = ["video", "audio", "sync"]


@pytest.mark.parametrize("seed", range(6))
def test_a_leaving_members_units_move_once_and_nothing_else_moves(
    client: redis.Redis, seed: int
) -> None:
    for i in range(4 + seed % 3):
        doc = {"name": f"cam{i}", "groups": GROUPS}
        client.hset(keys.STREAMS, f"{seed}-s{i}", json.dumps(doc))
    client.incr(keys.REGISTRY_VERSION)
    members = [Coordinator(client, f"m{i}", Host(), lease_ttl=3.0) for i in range(1, 4)]
    rounds(members, SETTLE_S + 3.0)
    before = owners(client)
    loads = Counter(before.values()).values()
    assert max(loads) - min(loads) <= 1, before
    leaving = members[seed % 3]
    leaving.leaving = True
    history: dict[str, list[str]] = defaultdict(list)

    def record() -> None:
        for unit, owner in owners(client).items():
            if not history[unit] or history[unit][-1] != owner:
                history[unit].append(owner)

    rounds(members, SETTLE_S + 4.0, after=record)
    after = owners(client)
    assert sorted(after) == sorted(before)
    assert leaving.pod not in after.values()
    moved = {u: h for u, h in history.items() if len(h) > 1}
    gone = [u for u, o in before.items() if o == leaving.pod]
    assert sorted(moved) == sorted(gone), moved  # only the leaver's units moved
    assert all(len(h) == 2 for h in moved.values()), moved  # each once
