"""Make-before-break holds on a busy member too: the owner handing a unit over stops
analysing only once it has analysed the media its warmed-up successor has from (both
mapped to the wall clock). An owner behind the live edge that stopped at the
successor's answer would leave the media in between unwatched -- a short black run
there was lost (a CI run: cut by SIGTERM, never raised). Real redis-server, real
Coordinators, ticks by hand; the hosts stand for the two members' runners."""

from __future__ import annotations

import json
from typing import Any

import redis

from service.coordination import keys
from service.coordination.assignment import Unit
from service.coordination.cluster import SETTLE_S, WARM_WAIT_S, Coordinator
from tests.coordination.test_restarted_member import Host
from tests.coordination.ticks import owners, rounds

SINCE = 1_000_000.0  # the successor's media starts here (wall clock)


class Giver(Host):
    """Its runner has analysed the media that arrived by ``analysed`` (wall clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.analysed = SINCE - 0.8  # 0.8 s behind the live edge

    def analysed_to(self, unit: Unit, wall: float) -> bool:
        return self.analysed >= wall


class Successor(Host):
    def warm(self, stream_id: str, spec: dict[str, Any], groups: list[str]) -> float | None:
        return SINCE


def _giver_and_successor(client: redis.Redis) -> tuple[Giver, Coordinator, Coordinator]:
    """m1 (its runner 0.8 s behind) runs both streams; m2, warm at once, has just joined."""
    giver = Giver()
    m1 = _two_streams_on_m1(client, giver)
    return giver, m1, Coordinator(client, "m2", Successor(), lease_ttl=3.0)


def _two_streams_on_m1(client: redis.Redis, giver: Giver) -> Coordinator:
    for sid in ("s1", "s2"):
        client.hset(keys.STREAMS, sid, json.dumps({"name": sid, "groups": ["video"]}))
    client.incr(keys.REGISTRY_VERSION)
    m1 = Coordinator(client, "m1", giver, lease_ttl=3.0)
    rounds([m1], 0.3)
    assert owners(client) == {"s1|video": "m1", "s2|video": "m1"}
    return m1


def test_the_owner_stops_only_once_it_analysed_up_to_the_successors_media(
    client: redis.Redis,
) -> None:
    giver, m1, m2 = _giver_and_successor(client)
    rounds([m1, m2], SETTLE_S + 1.0)  # m2 is warm: m1 is still behind its media
    assert client.hlen(keys.WARMED) == 1
    assert sorted(owners(client).values()) == ["m1", "m1"]
    assert len(giver.running) == 2  # m1 still analyses both streams
    giver.analysed = SINCE  # caught up
    rounds([m1, m2], 0.5)
    assert sorted(owners(client).values()) == ["m1", "m2"]
    assert len(giver.running) == 1


def test_an_owner_that_never_catches_up_releases_after_the_warm_up_wait(
    client: redis.Redis,
) -> None:
    _, m1, m2 = _giver_and_successor(client)
    rounds([m1, m2], SETTLE_S + WARM_WAIT_S + 1.0)
    assert sorted(owners(client).values()) == ["m1", "m2"]
