"""Sticky, capped placement of work units on members (pure; no I/O).

1. Targets: each member may hold ``floor(W/n)`` or ``ceil(W/n)`` units (capacities lower
   that and the rest is shared by water-filling); the ``W mod n`` extra slots go to the
   members that already hold the most, so a balanced cluster stays put.
2. Keep: every unit stays with its current owner while the owner is under its target
   (when over, it keeps the units of streams it holds most groups of, then those that
   rank highest for it).
3. Place the rest (orphans, new units, excess) stream by stream: first on a member that
   already runs that stream (one decode), else by rendezvous rank of the *stream id*
   among members with room, so a stream's groups land together.

With equal weights this gives max - min <= 1, max <= ceil(W/n), and a scale-out from a
balanced state moves at most ceil(W/(n+1)) units, all to the newcomer.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Unit:
    stream_id: str
    group: str


def rank(stream_id: str, member: str) -> int:
    """Rendezvous (highest random weight) score; stable across processes and runs."""
    digest = hashlib.blake2b(f"{stream_id}\x00{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _below(cap: int | None, share: float) -> bool:
    return cap is not None and cap < share


def targets(
    total: int,
    members: list[str],
    held: Mapping[str, int],
    capacities: Mapping[str, int | None],
) -> dict[str, int]:
    """How many units each member should hold (sums to min(total, total capacity))."""
    out: dict[str, int] = {}
    pool = list(members)
    remaining = total
    while pool:
        share = remaining / len(pool)
        capped = [m for m in pool if _below(capacities.get(m), share)]
        if not capped:
            break
        for m in capped:
            cap = int(capacities[m] or 0)
            out[m] = cap
            remaining -= cap
            pool.remove(m)
    if pool:
        base, extra = divmod(max(remaining, 0), len(pool))
        # Extra slots to those holding the most now (stickiness), ties by name.
        order = sorted(pool, key=lambda m: (-held.get(m, 0), m))
        for i, m in enumerate(order):
            out[m] = base + (1 if i < extra else 0)
    return out


def assign(
    units: Iterable[Unit],
    members: Iterable[str],
    current: Mapping[Unit, str],
    capacities: Mapping[str, int | None] | None = None,
) -> dict[Unit, str]:
    """The placement; units beyond the members' total capacity are left out."""
    unit_list = sorted(set(units))
    member_list = sorted(set(members))
    if not member_list:
        return {}
    caps = {m: (capacities or {}).get(m) for m in member_list}
    kept_by: dict[str, list[Unit]] = defaultdict(list)
    for u in unit_list:
        owner = current.get(u)
        if owner in caps:
            kept_by[owner].append(u)
    goal = targets(len(unit_list), member_list, {m: len(v) for m, v in kept_by.items()}, caps)
    result: dict[Unit, str] = {}
    load: Counter[str] = Counter()
    per_stream: dict[str, Counter[str]] = defaultdict(Counter)
    for owner, held in kept_by.items():
        groups_here = Counter(u.stream_id for u in held)
        # Keep whole streams first, then the streams that rank highest for this owner.
        held.sort(key=lambda u: (-groups_here[u.stream_id], -rank(u.stream_id, owner), u))
        for u in held[: goal[owner]]:
            result[u] = owner
            load[owner] += 1
            per_stream[u.stream_id][owner] += 1
    for u in unit_list:
        if u in result:
            continue
        room = [m for m in member_list if load[m] < goal[m]]
        if not room:
            continue
        together = per_stream[u.stream_id]
        best = max(room, key=lambda m: (together[m], rank(u.stream_id, m), m))
        result[u] = best
        load[best] += 1
        together[best] += 1
    return result


def moves(before: Mapping[Unit, str], after: Mapping[Unit, str]) -> set[Unit]:
    """Units whose owner changed (a unit that was placed and now is not counts too)."""
    return {u for u in set(before) | set(after) if before.get(u) != after.get(u)}
