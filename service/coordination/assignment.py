"""Sticky, capped assignment of work units to cluster members (pure; no I/O).

Why this shape (DESIGN.md section 6, REFERENCES.md "Coordination"): hashing alone
balances like random placement and moves units on every membership change; computing the
assignment from the *current* owners gives minimal movement and a hard load cap at once.

1. Goals: water-fill the total weight ``W`` over the members (a capacity below the fair
   share is a member's goal; the rest share what remains), so each uncapped member gets
   ``floor`` or ``ceil`` of its share; the ``ceil`` slots go to members that already hold
   at least ``ceil``, so a balanced cluster stays exactly as it is, and to the same ones
   in every snapshot taken while the excess is being shed (members shed a tick apart).
2. Keep: every unit stays with its live owner up to the owner's goal. An owner over its
   goal sheds exactly the excess, choosing *whole streams* by subset sum (streams it
   shares with other members first, then those that rank lowest for it) and splitting at
   most one stream.
3. Place orphans (owner gone, new units) and shed units stream by stream, largest first:
   on a member that already runs the stream if the whole remainder fits there, else on
   the member with the highest rendezvous rank *of the stream id* that has room for all
   of it, else fill the roomiest member and continue — so a stream's groups share one
   decode, and each split fills a member (from scratch, at most ``n - 1`` split streams).

Guarantees with equal weights and no capacities: loads differ by at most one and never
exceed ``ceil(W/n)``; the number of moves is the minimum any balanced assignment needs
(orphans + excess over the goals); a scale-out ``n -> n+1`` from balance moves at most
``ceil(W/(n+1))`` units, all to the newcomer; ``assign`` of its own output changes nothing.
With capacities, no cap is ever exceeded and units beyond the total capacity are left out
of the result (the result maps only assigned units; callers treat absent units as
unassigned). Unequal weights keep the caps and the determinism; loads then stay within
``ceil(W/n) + max weight - 1`` and a rerun with the same inputs is not guaranteed move-free.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Unit:
    """One stream x one detector group: the thing a member owns and runs."""

    stream_id: str
    group: str


def rank(stream_id: str, member: str) -> int:
    """Rendezvous (highest random weight) score of a member for a stream.

    Keyed on the stream id, not the unit, so every group of a stream prefers the same
    member; a keyed hash (not ``hash()``) so all processes agree on it.
    """
    digest = hashlib.blake2b(f"{stream_id}\x00{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def goals(
    total: int,
    members: list[str],
    held: Mapping[str, int],
    capacities: Mapping[str, int | None],
) -> dict[str, int]:
    """Target load per member; sums to ``min(total, total capacity)``.

    Water-filling: a member whose capacity is below the current fair share gets its
    capacity, the others split the rest into ``floor``/``ceil`` shares. The ``ceil`` slots
    go to members already holding at least ``ceil`` (by id), then to those holding the
    most: a balanced state maps to itself, a newcomer never takes a ``ceil`` slot from a
    member that holds one, and the slots stay put while members shed one by one.
    """
    out: dict[str, int] = {}
    pool = sorted(members)
    remaining = total
    while pool:
        capped = [m for m in pool if _cap(capacities, m) * len(pool) < remaining]
        if not capped:
            break
        for m in capped:
            out[m] = _cap(capacities, m)
            remaining -= out[m]
            pool.remove(m)
    if pool:
        base, extra = divmod(remaining, len(pool))

        def claim_to_ceil(m: str) -> tuple[int, int, str]:
            # Members already at or above the ceil share rank equal (then by id); the
            # rest by what they hold. Ranking *all* by what they hold made the slots
            # move while a scale-out was under way: the first member to shed dropped
            # below another and lost its slot, so more units moved, between old members.
            h = held.get(m, 0)
            return (0, 0, m) if h >= base + 1 else (1, -h, m)

        for i, m in enumerate(sorted(pool, key=claim_to_ceil)):
            out[m] = base + (1 if i < extra else 0)
    return out


def assign(
    units: Iterable[Unit],
    members: Iterable[str],
    current: Mapping[Unit, str],
    capacities: Mapping[str, int | None] | None = None,
    weights: Mapping[Unit, int] | None = None,
) -> dict[Unit, str]:
    """The new owner of each unit that can be placed (see the module docstring).

    ``current`` may name departed members and units that no longer exist; both are
    ignored. ``capacities`` bounds a member's total weight (``None``/absent: unbounded);
    ``weights`` are positive integers, default 1. The result depends only on the *sets*
    given, not on the order of any iterable or mapping.
    """
    unit_list = sorted(set(units))
    member_list = sorted(set(members))
    if not unit_list or not member_list:
        return {}
    caps: dict[str, int | None] = {
        m: None if (c := (capacities or {}).get(m)) is None else max(0, c) for m in member_list
    }

    def weight(u: Unit) -> int:
        w = (weights or {}).get(u, 1)
        if w < 1:
            raise ValueError(f"weight of {u} must be a positive integer, got {w}")
        return w

    held: dict[str, list[Unit]] = {m: [] for m in member_list}
    for u in unit_list:
        owner = current.get(u)
        if owner is not None and owner in held:
            held[owner].append(u)
    held_w = {m: sum(map(weight, us)) for m, us in held.items()}
    goal = goals(sum(map(weight, unit_list)), member_list, held_w, caps)

    # Streams this member shares with others are the cheapest to give up: moving them
    # can only bring their groups together.
    owners_of: dict[str, set[str]] = defaultdict(set)
    for m, us in held.items():
        for u in us:
            owners_of[u.stream_id].add(m)

    result: dict[Unit, str] = {}
    load = dict.fromkeys(member_list, 0)
    running: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(member_list, 0))
    for m in member_list:
        for u in _keep(held[m], goal[m], m, weight, owners_of):
            result[u] = m
            load[m] += weight(u)
            running[u.stream_id][m] += 1

    orphans: dict[str, list[Unit]] = defaultdict(list)
    for u in unit_list:
        if u not in result:
            orphans[u.stream_id].append(u)
    for sid in sorted(orphans, key=lambda s: (-sum(map(weight, orphans[s])), s)):
        _place(sid, orphans[sid], member_list, goal, caps, load, running[sid], weight, result)
    return result


def moves(before: Mapping[Unit, str], after: Mapping[Unit, str]) -> set[Unit]:
    """Units whose owner differs; a unit present on one side only counts as moved."""
    return {u for u in before.keys() | after.keys() if before.get(u) != after.get(u)}


def _cap(capacities: Mapping[str, int | None], member: str) -> int:
    """Capacity as a number; unbounded members never count as capped in water-filling."""
    c = capacities.get(member)
    return 1 << 62 if c is None else c


def _keep(
    held: list[Unit],
    goal: int,
    member: str,
    weight: Callable[[Unit], int],
    owners_of: Mapping[str, set[str]],
) -> list[Unit]:
    """The units ``member`` keeps: all of them, or all but a minimal-split excess.

    Sheds whole streams summing to the excess when a subset does (subset sum over the
    member's streams, first found in preference order), else the largest such sum plus
    part of one more stream, so at most one stream is split by shedding.
    """
    excess = sum(map(weight, held)) - goal
    if excess <= 0:
        return held
    by_stream: dict[str, list[Unit]] = defaultdict(list)
    for u in held:
        by_stream[u.stream_id].append(u)
    order = sorted(
        by_stream, key=lambda s: (len(owners_of[s]) == 1, rank(s, member), s)
    )  # shared streams first, then lowest rank
    size = {s: sum(map(weight, by_stream[s])) for s in order}
    # reach[total] = (previous total, stream index): first way found to shed ``total``.
    reach: dict[int, tuple[int, int]] = {0: (-1, -1)}
    for i, s in enumerate(order):
        for t in sorted(reach, reverse=True):
            if (nt := t + size[s]) <= excess and nt not in reach:
                reach[nt] = (t, i)
        if excess in reach:
            break
    best = max(reach)
    shed: set[Unit] = set()
    chosen: set[int] = set()
    t = best
    while t:
        t, i = reach[t]
        chosen.add(i)
        shed.update(by_stream[order[i]])
    if best < excess:
        # Some unchosen stream outweighs the rest (else the sum was not maximal): split it.
        rest = excess - best
        s = next(s for i, s in enumerate(order) if i not in chosen and size[s] > rest)
        for u in sorted(by_stream[s], reverse=True):
            if rest <= 0:
                break
            shed.add(u)
            rest -= weight(u)
    return [u for u in held if u not in shed]


def _place(
    sid: str,
    pending: list[Unit],
    members: list[str],
    goal: Mapping[str, int],
    caps: Mapping[str, int | None],
    load: dict[str, int],
    running: dict[str, int],
    weight: Callable[[Unit], int],
    result: dict[Unit, str],
) -> None:
    """Place one stream's unplaced units, keeping them together where room allows."""
    pending = sorted(pending, key=lambda u: (-weight(u), u))
    while pending:
        need = sum(map(weight, pending))
        smallest = min(map(weight, pending))
        room = {m: goal[m] - load[m] for m in members if goal[m] - load[m] >= smallest}
        if not room:
            # Only with unequal weights: the goals are fragmented. Exceed a goal (never a
            # cap) on the member with the most room left, so nothing is left out needlessly.
            fits = [m for m in members if (c := caps[m]) is None or c - load[m] >= smallest]
            if not fits:
                return
            target = max(fits, key=lambda m: (goal[m] - load[m], rank(sid, m), m))
            u = next(
                u for u in pending if (c := caps[target]) is None or c - load[target] >= weight(u)
            )
            _put(u, target, load, running, weight, result)
            pending.remove(u)
            continue
        whole = [m for m in room if room[m] >= need]
        if whole:
            target = max(whole, key=lambda m: (running[m], rank(sid, m), m))
            for u in pending:
                _put(u, target, load, running, weight, result)
            return
        target = max(room, key=lambda m: (running[m] > 0, room[m], rank(sid, m), m))
        for u in list(pending):
            if weight(u) <= goal[target] - load[target]:
                _put(u, target, load, running, weight, result)
                pending.remove(u)


def _put(
    u: Unit,
    member: str,
    load: dict[str, int],
    running: dict[str, int],
    weight: Callable[[Unit], int],
    result: dict[Unit, str],
) -> None:
    result[u] = member
    load[member] += weight(u)
    running[member] += 1
