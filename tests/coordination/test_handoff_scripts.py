"""The lease scripts' directed handoff, against a real redis-server: a unit released to a
successor can be claimed by that successor only, until the reservation ends."""

from __future__ import annotations

import time

import redis

from service.coordination import keys
from service.coordination.scripts import CLAIM, RELEASE

UNIT = "s1|video"


def _claim(r: redis.Redis, who: str) -> int:
    keys_ = [keys.LEASES, keys.LAST, keys.EPOCH, keys.RESERVED]
    return int(r.register_script(CLAIM)(keys=keys_, args=[who, 3000, UNIT])[0])


def _release(r: redis.Redis, who: str, epoch: int, successor: str, reserve_ms: int) -> int:
    args = [who, reserve_ms, UNIT, epoch, successor]
    return int(r.register_script(RELEASE)(keys=[keys.LEASES, keys.RESERVED], args=args)[0])


def test_only_the_successor_claims_a_handed_over_unit(client: redis.Redis) -> None:
    epoch = _claim(client, "m1")
    assert epoch > 0
    assert _release(client, "m1", epoch, "m4", 3000) == 1
    assert _claim(client, "m2") == -1  # an old member racing the newcomer loses
    new = _claim(client, "m4")
    assert new > epoch
    assert client.hget(keys.RESERVED, UNIT) is None  # the reservation ends with the claim


def test_a_reservation_for_a_successor_that_never_comes_runs_out(client: redis.Redis) -> None:
    epoch = _claim(client, "m1")
    assert _release(client, "m1", epoch, "m9", 300) == 1
    assert _claim(client, "m2") == -1
    time.sleep(0.4)
    assert _claim(client, "m2") > epoch


def test_release_without_a_successor_frees_the_unit_for_anyone(client: redis.Redis) -> None:
    epoch = _claim(client, "m1")
    assert _release(client, "m1", epoch, "", 3000) == 1
    assert _claim(client, "m3") > epoch


def test_a_stale_owner_cannot_release_or_reserve(client: redis.Redis) -> None:
    epoch = _claim(client, "m1")
    assert _release(client, "m1", epoch + 1, "m2", 3000) == 0
    assert client.hget(keys.RESERVED, UNIT) is None
    assert _claim(client, "m2") == -1  # m1 still holds it
