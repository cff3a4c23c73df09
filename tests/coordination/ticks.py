"""Shared by the coordination tests that tick real Coordinators by hand."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from service.coordination import keys
from service.coordination.cluster import Coordinator


def owners(client: redis.Redis) -> dict[str, str]:
    """unit field -> the member holding its lease."""
    return {k.decode(): v.decode().split("|")[0] for k, v in client.hgetall(keys.LEASES).items()}


def rounds(
    members: list[Coordinator], seconds: float, after: Callable[[], None] | None = None
) -> None:
    """Tick every member in turn, 20 times a second, for ``seconds``; ``after`` is called
    after each round (to watch what changed)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for m in members:
            m.tick()
        if after is not None:
            after()
        time.sleep(0.05)
