"""Properties of the pure cluster assignment (DESIGN.md section 6, targets G3-G5).

Worlds: 1..8 members, 0..60 units from 0..20 streams x {video, audio, sync}, and a current
assignment that names live members, members that left and units that no longer exist.
"""

from __future__ import annotations

import math
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from service.coordination.assignment import Unit, assign, goals, moves

GROUPS = ("video", "audio", "sync")
NAMES = [f"m{i}" for i in range(10)]
GONE = ["gone1", "gone2"]
STALE = [Unit("old", "video"), Unit("s00", "extra")]  # in `current`, not in the registry

World = tuple[list[Unit], list[str], dict[Unit, str]]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    streams = [f"s{i:02d}" for i in range(draw(st.integers(0, 20)))]
    pool = [Unit(s, g) for s in streams for g in GROUPS]
    units = sorted(draw(st.sets(st.sampled_from(pool), max_size=60)) if pool else set())
    members = sorted(draw(st.sets(st.sampled_from(NAMES), min_size=1, max_size=8)))
    owners = st.none() | st.sampled_from(members + GONE)
    current = {u: o for u in units + STALE if (o := draw(owners)) is not None}
    return units, members, current


def loads(result: dict[Unit, str], members: list[str]) -> Counter[str]:
    c = Counter(result.values())
    return Counter({m: c[m] for m in members})


def only(units: list[Unit], mapping: dict[Unit, str]) -> dict[Unit, str]:
    return {u: o for u, o in mapping.items() if u in set(units)}


def shuffled(world: World, seed: int) -> World:
    units, members, current = world
    rng = random.Random(seed)
    u, m, c = list(units), list(members), list(current.items())
    for x in (u, m, c):
        rng.shuffle(x)
    return u, m, dict(c)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_balanced_complete_and_at_rest(world: World) -> None:
    units, members, current = world
    result = assign(units, members, current)
    assert set(result) == set(units)
    assert set(result.values()) <= set(members)
    if units:
        ld = loads(result, members).values()
        assert max(ld) - min(ld) <= 1
        assert max(ld) <= math.ceil(len(units) / len(members))
    assert assign(units, members, result) == result  # at rest: a second pass moves nothing


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_minimal_movement(world: World) -> None:
    units, members, current = world
    n, total = len(members), len(units)
    result = assign(units, members, current)
    live = {u: o for u, o in only(units, current).items() if o in members}
    orphans = total - len(live)
    held = Counter(live.values())
    fair = math.ceil(total / n)
    slots = total % n  # members that may hold ceil(W/n) when it differs from floor
    at_ceiling = sum(1 for h in held.values() if h >= fair)
    # Weakened from "a member not over ceil(W/n) keeps all": if more members hold ceil than
    # there are ceil slots (e.g. 2,2,0 with W=4, n=3), balance forces some of them to give
    # up one unit. Otherwise nobody at or under ceil(W/n) loses anything.
    if slots == 0 or at_ceiling <= slots:
        for u, owner in live.items():
            if held[owner] <= fair:
                assert result[u] == owner
    for u, owner in live.items():
        if held[owner] <= total // n:
            assert result[u] == owner
    excess = sum(max(0, h - fair) for h in held.values())
    forced = max(0, at_ceiling - slots) if slots else 0
    moved = moves(only(units, current), result)
    # Equality: no balanced assignment can move fewer (orphans must move; each member
    # must end at floor or ceil with only `slots` ceilings).
    assert len(moved) == orphans + excess + forced
    assert all(result[u] != live.get(u) for u in moved)


@settings(max_examples=300, deadline=None)
@given(worlds(), st.sampled_from(["a-new", "z-new"]))
def test_scale_out_moves_a_share_all_to_the_newcomer(world: World, newcomer: str) -> None:
    units, members, current = world
    balanced = assign(units, members, current)
    grown = assign(units, [*members, newcomer], balanced)
    moved = moves(balanced, grown)
    assert len(moved) <= math.ceil(len(units) / (len(members) + 1))
    assert all(grown[u] == newcomer for u in moved)
    ld = loads(grown, [*members, newcomer]).values()
    assert not units or max(ld) - min(ld) <= 1


def _random_world(rng: random.Random) -> World:
    streams = [f"s{i:02d}" for i in range(rng.randint(0, 20))]
    pool = [Unit(s, g) for s in streams for g in GROUPS]
    units = sorted(rng.sample(pool, rng.randint(0, min(60, len(pool))))) if pool else []
    members = sorted(rng.sample(NAMES, rng.randint(1, 8)))
    owners = [*members, *GONE, None]
    current = {u: o for u in units if (o := rng.choice(owners)) is not None}
    return units, members, current


def test_scale_out_shed_one_member_at_a_time_still_moves_only_to_the_newcomer() -> None:
    """The cluster's view: members act one at a time, in any order, each on the snapshot
    of the *others* it read at its previous turn (a tick old; its own units it always
    knows). A member gives away what its assignment says is not its own, reserved for the
    successor that assignment names; it claims units reserved for it, and free units its
    assignment gives it. Nothing may move between old members (a goal that shifts as
    others shed breaks this). Seeded worlds rather than hypothesis: the failing
    interleavings are rare, and a fixed 1,000 of them include known ones."""
    for seed in range(1000):
        rng = random.Random(seed)
        units, members, current = _random_world(rng)
        newcomer = rng.choice(["n1", "n2"])
        state = assign(units, members, current)
        start = dict(state)
        everyone = [*members, newcomer]
        snapshot = {m: dict(state) for m in everyone}
        reserved: dict[Unit, str] = {}
        for _ in range(12 * len(everyone)):
            me = rng.choice(everyone)
            view = {u: o for u, o in snapshot[me].items() if o != me}
            view.update({u: o for u, o in state.items() if o == me})
            target = assign(units, everyone, view)
            snapshot[me] = dict(state)
            for u in [u for u, o in state.items() if o == me and target.get(u) not in (me, None)]:
                del state[u]
                reserved[u] = target[u]
            for u in units:
                if u not in state and reserved.get(u, target.get(u)) == me:
                    state[u] = me
                    reserved.pop(u, None)
        if set(state) != set(units) or reserved:
            continue  # handoffs still in flight after the turns drawn: nothing to judge
        moved = moves(start, state)
        detail = f"seed {seed}: {sorted((u, start.get(u), state[u]) for u in moved)}"
        assert len(moved) <= math.ceil(len(units) / (len(members) + 1)), detail
        assert all(state[u] == newcomer for u in moved), detail


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_streams_land_together_from_scratch(world: World) -> None:
    units, members, _ = world
    result = assign(units, members, {})
    owners: dict[str, set[str]] = {}
    for u, m in result.items():
        owners.setdefault(u.stream_id, set()).add(m)
    split = [s for s, ms in owners.items() if len(ms) > 1]
    # "Every stream on one member" contradicts balance (3 groups, 2 members must split
    # 2+1), so the strongest true statement: a stream is split only when it cannot fit
    # whole, each split fills a member, and the last member is never filled by a split,
    # hence at most n - 1 split streams (none with one member).
    assert len(split) <= len(members) - 1


@settings(max_examples=300, deadline=None)
@given(worlds(), st.integers(0, 2**32))
def test_deterministic_under_permutation(world: World, seed: int) -> None:
    caps = {m: (i % 4) * 3 if i % 2 else None for i, m in enumerate(NAMES)}
    expected = assign(*world, capacities=caps)
    u, m, c = shuffled(world, seed)
    assert assign(u, m, c, capacities=dict(reversed(list(caps.items())))) == expected
    assert assign(*world) == assign(u, m, c)


@settings(max_examples=300, deadline=None)
@given(worlds(), st.dictionaries(st.sampled_from(NAMES), st.none() | st.integers(0, 8)))
def test_capacities_never_exceeded(world: World, caps: dict[str, int | None]) -> None:
    units, members, current = world
    result = assign(units, members, current, caps)
    ld = loads(result, members)
    for m in members:
        cap = caps.get(m)
        assert cap is None or ld[m] <= cap
    bounded = all(caps.get(m) is not None for m in members)
    room = sum(caps.get(m) or 0 for m in members) if bounded else len(units)
    assert len(result) == min(len(units), room)  # surplus is left out, nothing else is
    # Nobody holds more than 1 above a member that still has room (caps push the excess
    # to others instead of starving them).
    free = [ld[m] for m in members if (c := caps.get(m)) is None or ld[m] < c]
    if free and units:
        assert max(ld.values()) - min(free) <= 1
    assert assign(units, members, result, caps) == result  # at rest with caps too
    # Kept units stay unless their owner is over its (capped) goal.
    live = {u: o for u, o in only(units, current).items() if o in members}
    held = Counter(live.values())
    goal = goals(len(units), members, held, {m: caps.get(m) for m in members})
    for u, owner in live.items():
        if held[owner] <= goal[owner]:
            assert result[u] == owner


@settings(max_examples=300, deadline=None)
@given(worlds(), st.data())
def test_unequal_weights_keep_caps_and_near_balance(world: World, data: st.DataObject) -> None:
    units, members, current = world
    weights = {u: data.draw(st.integers(1, 4)) for u in units}
    result = assign(units, members, current, weights=weights)
    assert set(result) == set(units)
    per = Counter[str]()
    for u, m in result.items():
        per[m] += weights[u]
    if units:
        fair = math.ceil(sum(weights.values()) / len(members))
        assert max(per.values()) <= fair + max(weights.values()) - 1
    assert assign(*shuffled(world, 7), weights=weights) == result


def test_examples() -> None:
    a, b, c = (Unit("s1", g) for g in GROUPS)
    assert assign([], ["m1"], {}) == {}
    assert assign([a], [], {a: "m1"}) == {}
    # 2,2,0 with W=4, n=3: one ceil slot, so the higher id gives up one unit.
    d = Unit("s2", "video")
    before = {a: "m1", b: "m1", c: "m2", d: "m2"}
    after = assign([a, b, c, d], ["m1", "m2", "m3"], before)
    assert sorted(Counter(after.values()).values()) == [1, 1, 2]
    assert len(moves(before, after)) == 1
    # Capacity short: surplus left out, cap respected.
    assert len(assign([a, b, c, d], ["m1"], {}, {"m1": 3})) == 3
    assert moves({a: "m1"}, {}) == {a}
