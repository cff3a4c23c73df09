"""When and what the pod-deletion-cost logic patches (the API call itself is exercised
against a real API server with the chart)."""

from __future__ import annotations

from typing import Any

from service.k8s import ANNOTATION, DeletionCost


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make() -> tuple[DeletionCost, list[tuple[str, str, dict[str, Any]]], Clock]:
    calls: list[tuple[str, str, dict[str, Any]]] = []
    clock = Clock()
    cost = DeletionCost(
        "avmon-abc", "media", lambda ns, pod, body: calls.append((ns, pod, body)), clock
    )
    return cost, calls, clock


def test_patches_own_pod_with_load_only_when_it_changes() -> None:
    cost, calls, clock = make()
    assert cost.update(6)
    assert calls == [("media", "avmon-abc", {"metadata": {"annotations": {ANNOTATION: "6"}}})]
    for _ in range(100):
        clock.t += 1
        assert not cost.update(6)  # unchanged: never re-patched
    assert len(calls) == 1


def test_at_most_every_ten_seconds_and_the_latest_value_wins() -> None:
    cost, calls, clock = make()
    cost.update(3)
    clock.t += 4
    assert not cost.update(5)  # changed, but too soon
    clock.t += 3
    assert not cost.update(7)
    clock.t += 3.5  # 10.5 s after the first patch
    assert cost.update(7)
    assert [c[2]["metadata"]["annotations"][ANNOTATION] for c in calls] == ["3", "7"]


def test_failed_patch_is_retried_later_not_in_a_loop() -> None:
    failures = []

    def broken(ns: str, pod: str, body: dict[str, Any]) -> None:
        failures.append(body)
        raise OSError("API server unavailable")

    clock = Clock()
    cost = DeletionCost("p", "n", broken, clock)
    assert not cost.update(2)
    clock.t += 1
    assert not cost.update(2)
    assert len(failures) == 1  # backed off
    clock.t += 10
    cost.update(2)
    assert len(failures) == 2
