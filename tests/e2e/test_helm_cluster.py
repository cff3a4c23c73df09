"""The user's story on a real Kubernetes (issue 12): `helm install` the chart with the real
image, register streams through the Service, see defects in the API, at a webhook
receiver and in /metrics; lose a pod (deleted, or its process SIGKILLed in its container)
and see its work units fail over; load the pods until the HPA adds one on CPU, then
unload them until it removes the pod with the lowest pod-deletion-cost -- with no alarm
duplicated or lost through any of it.

Everything is real: the cluster of tests/e2e/cluster.py (control plane, kubelet,
containerd, runc, bridge CNI, kube-proxy, DNS, metrics-server, all built or installed by
the project's scripts), the chart as a user installs it, the image from the Dockerfile, a
live MPEG-TS feed the test serves over HTTP, a webhook receiver verifying every delivery.
The tests run in file order and share one release.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from service.coordination.cluster import WARM_WAIT_S
from tests.conftest import ClipFactory
from tests.e2e.apiserver import ROOT, tool
from tests.e2e.cluster import HOST_IP, Cluster
from tests.integration.live_http import LiveHttpSource
from tests.integration.service_proc import Hooks, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespace, containers)"),
    pytest.mark.skipif(
        not all(
            shutil.which(t)
            for t in ("containerd", "runc", "ctr", "buildah", "mmdebstrap", "dnsmasq")
        ),
        reason="needs Debian's containerd, runc, buildah, mmdebstrap, dnsmasq "
        "(scripts/setup --tests)",
    ),
]

NS = "avmon-e2e"
TOKEN = "e2e-api-token"  # a throwaway cluster's credentials
HOOK_SECRET = "e2e-webhook-secret"
LOOP_S, BLACK_FROM, BLACK_TO = 20.0, 8.0, 11.0  # the feed: black 8-11 s of every 20 s
MONITOR = "app.kubernetes.io/component=monitor"
# Values a user would set for this small cluster: the local images and small CPU
# requests (deploy/local-cluster-values.yaml), a webhook, a quick HPA.
VALUES: dict[str, Any] = {
    "auth": {"apiToken": TOKEN, "webhookSecret": HOOK_SECRET},
    "autoscaling": {
        "minReplicas": 2,
        "maxReplicas": 3,
        "targetCPUUtilizationPercentage": 50,
        "behavior": {
            "scaleDown": {
                "stabilizationWindowSeconds": 20,
                "selectPolicy": "Min",
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}],
            }
        },
    },
}

FIGURES: dict[str, Any] = {}


def figure(name: str, value: Any) -> None:
    FIGURES[name] = value
    print(f"FIGURE {name}: {value}")


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = time.monotonic()
    cluster = Cluster(tmp_path_factory.mktemp("kube")).up()
    figure("cluster_up_s", round(time.monotonic() - started, 1))
    try:
        yield cluster
    finally:
        cluster.down()
        print("FIGURES " + json.dumps(FIGURES))
        assert cluster.leftovers() == []  # down leaves nothing behind


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    receiver = Hooks(HOOK_SECRET, host=HOST_IP)
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def feed(make_clip: ClipFactory) -> Iterator[LiveHttpSource]:
    clip, _ = make_clip(f"black@{BLACK_FROM:g}-{BLACK_TO:g}", duration=LOOP_S, size="320x180")
    live = LiveHttpSource(clip, host=HOST_IP)
    yield live
    live.close()


def run(kube: Cluster, *argv: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig)}
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


class Api:
    """The avmon API through its Service's ClusterIP, as a client in the cluster sees it."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        for attempt in range(20):
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    text = resp.read()
                return json.loads(text) if text else None
            except (urllib.error.URLError, ConnectionResetError) as exc:
                # kube-proxy still sends some connections to a pod that just died, until
                # its endpoint goes: refused (never arrived) is retried, and so is a reset
                # read (GET changes nothing).
                reason = getattr(exc, "reason", exc)
                retry = isinstance(reason, ConnectionRefusedError) or (
                    method == "GET" and isinstance(reason, ConnectionResetError)
                )
                if not retry or attempt == 19:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def units(self) -> dict[tuple[str, str], tuple[str | None, bool]]:
        return {
            (u["stream_id"], u["group"]): (u["owner"], u["running"])
            for u in self.call("GET", "/api/v1/cluster")["units"]
        }


@pytest.fixture(scope="module")
def release(kube: Cluster, hooks: Hooks) -> Iterator[Api]:
    from kubernetes import client

    core = client.CoreV1Api(kube.client())
    labels = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn")}
    core.create_namespace({"metadata": {"name": NS, "labels": labels}})
    values = kube.folder / "e2e-values.yaml"
    values.write_text(json.dumps(VALUES))
    started = time.monotonic()
    out = run(
        kube, tool("helm"), "install", "avmon", ROOT / "deploy" / "helm" / "avmon", "-n", NS,
        "-f", ROOT / "deploy" / "local-cluster-values.yaml", "-f", values,
        "--set-json", f"config.webhookUrls={json.dumps([hooks.url])}",
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr + kube.status()
    assert "Warning" not in out.stderr, out.stderr  # PodSecurity restricted: no warnings
    figure("helm_install_to_ready_s", round(time.monotonic() - started, 1))
    svc = core.read_namespaced_service("avmon", NS)
    LOGS.append(PodLogs(kube))
    yield Api(f"http://{svc.spec.cluster_ip}:8080")
    LOGS.pop().close()


def wait_until(what: str, ready: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    got = wait_for(ready, timeout, every)
    if not got:
        raise AssertionError(f"{what}: not within {timeout:g} s")
    return got


def monitor_pods(kube: Cluster, terminating: bool = False) -> list[Any]:
    from kubernetes import client

    pods = client.CoreV1Api(kube.client()).list_namespaced_pod(NS, label_selector=MONITOR)
    return [p for p in pods.items if terminating or p.metadata.deletion_timestamp is None]


class PodLogs:
    """Follows every monitor pod's log into a file from the release on, so a failure can
    show what a pod that is gone since (deleted, scaled in, its container killed) said."""

    def __init__(self, kube: Cluster) -> None:
        self.kube = kube
        self.folder = kube.folder / "pod-logs"
        self.folder.mkdir(exist_ok=True)
        self.follows: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pod-logs", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kube.kubeconfig)}
        while not self._stop.wait(1.0):
            try:
                names = [p.metadata.name for p in monitor_pods(self.kube, terminating=True)]
            except Exception:  # the API server busy: next time
                continue
            for name in names:
                follow = self.follows.get(name)
                if follow is not None and follow.poll() is None:
                    continue
                # A restarted container ends the follow: follow again (some lines twice).
                with (self.folder / f"{name}.log").open("ab") as out:
                    self.follows[name] = subprocess.Popen(
                        [str(tool("kubectl")), "-n", NS, "logs", "-f", "--timestamps", name],
                        stdout=out, stderr=subprocess.DEVNULL, env=env,
                    )  # fmt: skip

    def grep(self, pattern: str, last: int = 40) -> dict[str, list[str]]:
        out = {}
        for path in sorted(self.folder.glob("*.log")):
            # A follow started again repeats the log so far: each (timestamped) line once.
            lines = list(dict.fromkeys(path.read_text(errors="replace").splitlines()))
            out[path.stem] = [ln for ln in lines if re.search(pattern, ln)][-last:]
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for follow in self.follows.values():
            follow.kill()
            follow.wait()


LOGS: list[PodLogs] = []


def pod_logs(pattern: str = "WARNING|ERROR|handing|shedding", last: int = 40) -> Any:
    """What the monitor pods (those gone too) logged of their handoffs and troubles."""
    return LOGS[0].grep(pattern, last) if LOGS else {}


def register(api: Api, feed: LiveHttpSource, first: int, count: int) -> list[str]:
    ids = []
    for i in range(first, first + count):
        body = {"name": f"feed-{i}", "url": feed.url}
        ids.append(api.call("POST", "/api/v1/streams", body)["id"])
    return ids


def settled(api: Api, ids: list[str], members: set[str] | None = None) -> bool:
    """Every unit of ``ids`` running, on one of ``members`` if given."""
    units = api.units()
    mine = [v for (sid, _), v in units.items() if sid in ids]
    if not mine or len(mine) < len(ids):
        return False
    return all(run_ and (members is None or owner in members) for owner, run_ in mine)


STREAMS: list[str] = []
DELETED: dict[str, datetime] = {}  # stream -> when the test deleted it


def delete_stream(api: Api, sid: str) -> None:
    DELETED[sid] = datetime.now().astimezone()
    api.call("DELETE", f"/api/v1/streams/{sid}")


# ---------------------------------------------------------------------- 1: install
def test_helm_install_waits_for_ready_pods_and_helm_test_passes(
    kube: Cluster, release: Api
) -> None:
    pods = monitor_pods(kube)
    assert len(pods) == 2  # the HPA's minReplicas, from the first moment (no scale-up later)
    out = run(kube, tool("helm"), "test", "avmon", "-n", NS, "--logs")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "/readyz 200" in out.stdout, out.stdout


# ---------------------------------------------------------------------- 2: streams
def test_streams_through_the_service_raise_defects_in_api_webhook_and_metrics(
    kube: Cluster, release: Api, feed: LiveHttpSource, hooks: Hooks
) -> None:
    # Two streams (six units): four already put the two pods over the HPA's target on a
    # busy machine (a CI run met a pod with no address here: most likely an early scale-out).
    STREAMS.extend(register(release, feed, 0, 2))
    wait_until("units running", lambda: settled(release, STREAMS), 60)
    owners = {release.units()[(sid, g)][0] for sid, g in release.units() if sid in STREAMS}
    assert len(owners) == 2, owners  # both pods work

    def closed_everywhere() -> bool:
        defects = release.call("GET", "/api/v1/defects")
        closed = {
            d["stream_id"] for d in defects if d["type"] == "black" and d["state"] == "closed"
        }
        hooked = {
            e["defect"]["stream_id"]
            for _, e in hooks.verified(HOOK_SECRET)
            if e["kind"] == "close" and e["defect"]["type"] == "black"
        }
        return set(STREAMS) <= closed & hooked

    started = time.monotonic()
    wait_until("a closed black defect per stream, in the API and at the receiver",
               closed_everywhere, 2 * LOOP_S + 15, every=1)  # fmt: skip
    figure("first_black_closed_everywhere_s", round(time.monotonic() - started, 1))
    figure("cpu_of_requests_with_first_streams_pct", round(_utilization(kube)))
    total = 0.0
    pods = monitor_pods(kube)
    assert len(pods) == 2 and all(p.status.pod_ip for p in pods), (
        f"scaled before the HPA test: {[(p.metadata.name, p.status.phase) for p in pods]}"
    )
    for pod in pods:
        with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/metrics", timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith("avmon_defects_raised_total{"):
                total += float(line.rsplit(" ", 1)[1])
    assert total >= len(STREAMS), total  # every pod's /metrics, as Prometheus scrapes it


# ---------------------------------------------------------------------- 3: failover
def _failover(
    kube: Cluster, api: Api, fault: Callable[[Any], object], restarts: bool = False
) -> tuple[float, float | None, str]:
    """Fault the pod owning most units. Seconds until other pods hold all of its units
    (None if they never all did), until all of them run again, and where. With
    ``restarts`` (the kubelet restarts a killed container; it rejoins under its pod's name
    and may re-claim its own leases) a unit under the victim's name counts once a *new*
    process publishes it running: past the stale-status bound (2 s) after the kill,
    every fresh record under that name is the new process's."""
    units = api.units()
    counts: dict[str, int] = defaultdict(int)
    for owner, _ in units.values():
        counts[str(owner)] += 1
    victim = max(counts, key=lambda k: counts[k])
    moving = [k for k, (owner, _) in units.items() if owner == victim]
    pod = next(p for p in monitor_pods(kube) if p.metadata.name == victim)
    started = time.monotonic()
    fault(pod)
    claimed: list[float] = []

    def moved() -> str | None:
        now = api.units()
        if not claimed and all(now[k][0] not in (None, victim) for k in moving):
            claimed.append(time.monotonic() - started)
        if not all(now[k][1] for k in moving):
            return None
        owners = {now[k][0] for k in moving}
        if victim not in owners:
            return "other pods"
        if restarts and time.monotonic() - started > 2.0:
            return (
                "other pods and the restarted container"
                if len(owners) > 1
                else ("the restarted container")
            )
        return None

    try:
        where = wait_until(f"{len(moving)} units of {victim} running again", moved, 60, 0.05)
    except AssertionError as exc:
        now = api.units()
        stuck = {f"{k[0]}|{k[1]}": now.get(k) for k in moving if not (now.get(k) or (0, 0))[1]}
        raise AssertionError(f"{exc}: {stuck}; {pod_logs()}") from None
    return time.monotonic() - started, (claimed or [None])[0], where


def test_deleting_a_pod_hands_its_units_over(kube: Cluster, release: Api) -> None:
    seconds, claimed, where = _failover(
        kube,
        release,
        lambda pod: run(kube, tool("kubectl"), "-n", NS, "delete", "pod", pod.metadata.name,
                        "--wait=false"),
    )  # fmt: skip
    # The chart's preStop sleeps 5 s (endpoints drop the pod) before SIGTERM. On SIGTERM
    # the pod asks its successors to warm up and keeps analysing until they have media
    # (at most WARM_WAIT_S), then releases: without the handoff the units would wait
    # for their leases to expire (claimed after ~8.2 s).
    figure("pod_delete_to_units_claimed_elsewhere_s", claimed and round(claimed, 2))
    figure("pod_delete_to_units_running_elsewhere_s", round(seconds, 2))
    assert where == "other pods"
    assert claimed is not None and claimed < 5 + WARM_WAIT_S + 0.8
    # Warmed up before the claim, the successors are running when they take over (their
    # status, published every 0.4 s, says so a moment later).
    figure("pod_delete_claimed_to_running_s", round(seconds - claimed, 2))
    assert seconds < 5 + WARM_WAIT_S + 3.0
    wait_until("the Deployment back at 2 ready pods",
               lambda: len([p for p in monitor_pods(kube) if _ready(p)]) == 2, 90)  # fmt: skip


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_sigkill_in_the_container_fails_its_units_over(kube: Cluster, release: Api) -> None:
    def kill(pod: Any) -> None:
        cid = pod.status.container_statuses[0].container_id.split("://", 1)[1]
        subprocess.run(
            ["ctr", "--address", str(kube.folder / "node" / "containerd.sock"), "-n",
             "k8s.io", "tasks", "kill", "-s", "SIGKILL", cid], check=True,
        )  # fmt: skip

    seconds, claimed, where = _failover(kube, release, kill, restarts=True)
    figure("container_sigkill_to_units_claimed_elsewhere_s", claimed and round(claimed, 2))
    figure("container_sigkill_to_units_running_again_s", round(seconds, 2))
    figure("container_sigkill_units_ran_again_on", where)
    # The kubelet restarts the container within seconds and it rejoins under the pod's
    # name: the others may not get to run every unit before it takes its share back.
    if claimed is not None:
        assert claimed < 2 * 3 + 1.0  # G1: the lease (TTL 3 s) expires, others claim
    assert seconds < 15.0
    wait_until("the killed container restarted and ready",
               lambda: len([p for p in monitor_pods(kube) if _ready(p)]) == 2, 90)  # fmt: skip


# ---------------------------------------------------------------------- 4: HPA
def _utilization(kube: Cluster) -> float:
    """Average CPU of the monitor pods over their request (200m), as the HPA computes it."""
    from kubernetes import client

    names = {p.metadata.name for p in monitor_pods(kube)}
    got = client.CustomObjectsApi(kube.client()).list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", NS, "pods"
    )
    cores = [
        sum(_cores(c["usage"]["cpu"]) for c in item["containers"])
        for item in got["items"]
        if item["metadata"]["name"] in names
    ]
    return 100 * sum(cores) / (0.2 * len(cores)) if cores else 0.0


def _hpa_utilization(kube: Cluster) -> float | None:
    """The average CPU utilization (% of request) the HPA last computed, from its status."""
    for metric in _hpa(kube).status.current_metrics or []:
        if metric.resource is not None and metric.resource.name == "cpu":
            value = metric.resource.current.average_utilization
            return None if value is None else float(value)
    return None


def _cores(quantity: str) -> float:
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    return float(quantity[:-1]) * units[quantity[-1]] if quantity[-1] in units else float(quantity)


def _hpa(kube: Cluster) -> Any:
    from kubernetes import client

    return client.AutoscalingV2Api(kube.client()).read_namespaced_horizontal_pod_autoscaler(
        "avmon", NS
    )


def test_hpa_adds_a_pod_on_cpu_and_the_new_pod_takes_only_the_excess(
    kube: Cluster, release: Api, feed: LiveHttpSource
) -> None:
    target = VALUES["autoscaling"]["targetCPUUtilizationPercentage"]
    old = {p.metadata.name for p in monitor_pods(kube)}
    over_at: float | None = None
    before = release.units()
    started = time.monotonic()
    while (_hpa(kube).status.desired_replicas or 0) <= 2:
        assert time.monotonic() - started < 300, f"no scale-out; CPU {_utilization(kube):.0f}%"
        # The HPA acts past its 10% tolerance: load until clearly beyond it.
        if len(STREAMS) < 20 and _utilization(kube) < 1.3 * target:
            STREAMS.extend(register(release, feed, len(STREAMS), 2))
            wait_until("new units running", lambda: settled(release, STREAMS), 60)
            before = release.units()
        pause = time.monotonic() + 15
        while time.monotonic() < pause and (_hpa(kube).status.desired_replicas or 0) <= 2:
            if over_at is None and _utilization(kube) > 1.1 * target:
                over_at = time.monotonic()
                figure("streams_at_cpu_over_target", len(STREAMS))
            # The owners as the HPA decides: a move between the old pods before then
            # (the last streams placed, a failover settling) is not the scale-out's.
            before = release.units()
            time.sleep(1)
    decided = time.monotonic()
    if over_at is None:
        # The HPA acted between two of our samples (or while new units were starting, when
        # we do not sample): what it acted on is in its status, and must be over target.
        acted_on = _hpa_utilization(kube)
        figure("hpa_acted_on_cpu_percent", acted_on)
        assert acted_on is not None and acted_on > 1.1 * target, (acted_on, _utilization(kube))
        over_at = decided
    figure("cpu_over_target_to_hpa_decision_s", round(decided - over_at, 1))
    new = wait_until(
        "a third monitor pod ready",
        lambda: [p.metadata.name for p in monitor_pods(kube)
                 if p.metadata.name not in old and _ready(p)],
        120, every=0.5,
    )[0]  # fmt: skip
    figure("hpa_decision_to_new_pod_ready_s", round(time.monotonic() - decided, 1))

    def owns() -> bool:
        return any(o == new and r for o, r in release.units().values())

    wait_until(f"{new} running units", owns, 60, every=0.2)
    figure("hpa_decision_to_new_pod_running_units_s", round(time.monotonic() - decided, 1))
    time.sleep(10)  # let the balance settle
    after = release.units()
    moved = [k for k in before if k in after and after[k][0] != before[k][0]]
    figure("units_moved_on_scale_out", f"{len(moved)} of {len(after)}")
    moves = {f"{k[0]}|{k[1]}": f"{before[k][0]} -> {after[k][0]}" for k in moved}
    assert moved and all(after[k][0] == new for k in moved), (moves, pod_logs())
    assert len(moved) <= -(-len(after) // 3) + 1  # only the new pod's share


# ---------------------------------------------------------------------- 5: scale-in
def _costs(kube: Cluster) -> dict[str, int]:
    key = "controller.kubernetes.io/pod-deletion-cost"
    return {
        p.metadata.name: int((p.metadata.annotations or {}).get(key, "0"))
        for p in monitor_pods(kube)
    }


def test_scale_in_removes_the_lowest_deletion_cost_pod_and_no_alarm_is_lost_or_doubled(
    kube: Cluster, release: Api, hooks: Hooks, feed: LiveHttpSource
) -> None:
    # Two three-unit streams and two one-unit streams left: 8 units over 3 pods, at best
    # 3 + 3 + 2, so one pod is the least loaded and its cost says so. The HPA removes a
    # pod below 2/3 of its 50% target: 11 units left it at 37% of requests on a busy
    # machine (a CI run with no scale-in in 240 s); four three-unit streams, at about
    # the threshold too.
    singles = []
    for i in range(2):
        body = {"name": f"black-only-{i}", "url": feed.url, "detectors": ["black"]}
        singles.append(release.call("POST", "/api/v1/streams", body)["id"])
    keep, drop = STREAMS[:2] + singles, STREAMS[2:]
    for sid in drop:
        delete_stream(release, sid)
    window_from = datetime.now().astimezone()
    costs = _costs(kube)
    started = time.monotonic()
    while len(costs) == 3:
        assert time.monotonic() - started < 240, (
            f"no scale-in: CPU {_utilization(kube):.0f}% of requests, costs {costs}"
        )
        time.sleep(0.5)
        now = _costs(kube)
        if len(now) < 3:
            break
        costs = now
    victim = next(iter(set(costs) - set(_costs(kube))))
    figure("deletion_costs_before_scale_in", costs)
    figure("scale_in_victim", victim)
    assert costs[victim] == min(costs.values())
    assert len(set(costs.values())) > 1, costs  # a choice was made
    survivors = set(costs) - {victim}
    gone = time.monotonic()
    wait_until("units on the survivors", lambda: settled(release, keep, survivors), 60)
    figure("scale_in_to_units_on_survivors_s", round(time.monotonic() - gone, 1))
    time.sleep(LOOP_S + 5)  # another black run per stream after the handoff
    window_to = datetime.now().astimezone()
    for sid in keep:
        delete_stream(release, sid)
    _no_alarm_lost_or_doubled(release, hooks, keep, window_from, window_to)


def _no_alarm_lost_or_doubled(
    api: Api, hooks: Hooks, keep: list[str], since: datetime, until: datetime
) -> None:
    """At the receiver, every black defect exactly once opened and once closed (by
    webhook-id, deliveries being at-least-once); no two defects of one stream overlap (a
    doubled alarm); the streams kept through the scale-in have a black run every loop
    (none lost)."""

    def black() -> list[dict[str, Any]]:
        by_id = {wid: e for wid, e in hooks.verified(HOOK_SECRET)}  # at-least-once
        return [e for e in by_id.values() if e["defect"]["type"] == "black"]

    def unpaired() -> dict[str, list[str]]:
        events = black()  # verified once per check, not once per defect
        kinds: dict[str, list[str]] = defaultdict(list)
        for e in events:
            kinds[e["defect"]["id"]].append(e["kind"])
        return {i: k for i, k in kinds.items() if sorted(k) != ["close", "open"]}

    try:
        wait_until("every black defect opened and closed once at the receiver",
                   lambda: not unpaired(), 30, every=1)  # fmt: skip
    except AssertionError as exc:
        odd = unpaired()
        told = [
            (e["kind"], d["stream_id"], d.get("epoch"), d["started_at"], d.get("ended_at"),
             d["details"].get("closed_because"))
            for e in black() if (d := e["defect"])["id"] in odd
        ]  # fmt: skip
        streams = "|".join(sorted({t[1] for t in told})) or "-"
        raise AssertionError(f"{exc}: {odd}; {told}; {pod_logs(streams, last=80)}") from None
    events = black()
    cut = [
        e["defect"]
        for e in events
        if e["kind"] == "close" and e["defect"]["details"].get("closed_because") == "stream deleted"
    ]
    assert all(d["stream_id"] in DELETED for d in cut), cut
    figure("black_defects_closed_by_their_streams_deletion", len(cut))
    closes = [e["defect"] for e in events if e["kind"] == "close"]
    figure("defects_delivered", len(closes))
    by_stream: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for d in closes:
        start, end = (datetime.fromisoformat(d[k]) for k in ("started_at", "ended_at"))
        by_stream[d["stream_id"]].append((start, end))
    for sid, runs in by_stream.items():
        runs.sort()
        for (_, end), (start, _) in itertools.pairwise(runs):
            assert start > end, f"overlapping alarms on {sid}: {runs}"
        if sid in keep:
            inside = [s for s, _ in runs if since <= s <= until]
            edges = [since, *inside, until]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(edges)]
            # A black run every loop. One was lost in 1 of 3-4 runs before the handoff
            # seam; the likely cause, a busy owner releasing its units before analysing
            # up to where its successor's media began, is what the loopback G8 short run
            # reproduced (starved of CPU) and the seam fixed. Not seen in any e2e run
            # since, so a loss fails the test again.
            trail = "" if max(gaps) < 1.6 * LOOP_S else pod_logs(f"{sid}|handing|warm", last=60)
            assert max(gaps) < 1.6 * LOOP_S, f"a black run lost on {sid}: {runs}; {trail}"


# ---------------------------------------------------------------------- 6: chart CI
CI_VALUES = sorted((ROOT / "deploy" / "helm" / "avmon" / "ci").glob("*-values.yaml"))


def _ci_prerequisites(kube: Cluster) -> None:
    """What each ci/*-values.yaml expects of a cluster, as a chart repository's CI
    cluster provides it: a volume for the persistent Redis, and the external Redis
    (redis-master.data, password s3cret) that external-redis-values.yaml points at."""
    from kubernetes import client

    api = kube.client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    volume = kube.folder / "pv-redis"
    volume.mkdir(mode=0o777, exist_ok=True)
    volume.chmod(0o777)  # fsGroup does not apply to hostPath: the Redis user writes here
    core.create_persistent_volume(
        {
            "metadata": {"name": "ci-redis"},
            "spec": {
                "capacity": {"storage": "2Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(volume)},
            },
        }
    )
    core.create_namespace({"metadata": {"name": "data"}})
    labels = {"app": "redis-master"}
    apps.create_namespaced_deployment(
        "data",
        {
            "metadata": {"name": "redis-master"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "redis",
                                "image": "localhost/avmon-redis:e2e",
                                "imagePullPolicy": "Never",
                                "args": ["--requirepass", "s3cret", "--save", ""],
                                "ports": [{"containerPort": 6379}],
                            }
                        ]
                    },
                },
            },
        },
    )
    core.create_namespaced_service(
        "data",
        {
            "metadata": {"name": "redis-master"},
            "spec": {"selector": labels, "ports": [{"port": 6379, "targetPort": 6379}]},
        },
    )


def test_every_ci_values_file_installs_and_passes_helm_test(kube: Cluster, release: Api) -> None:
    """`ct install`'s loop (chart-testing's Go module is not served here): each
    ci/*-values.yaml installed in a namespace of its own with `--wait`, `helm test
    --logs`, uninstalled -- the four side by side, after the story's release is gone."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    helm = tool("helm")
    out = run(kube, helm, "uninstall", "avmon", "-n", NS, "--wait")
    assert out.returncode == 0, out.stderr
    _ci_prerequisites(kube)
    core = client.CoreV1Api(kube.client())
    restricted = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn")}

    def one(values: Path) -> tuple[str, float, str]:
        name = "ct-" + values.name.removesuffix("-values.yaml")
        core.create_namespace({"metadata": {"name": name, "labels": restricted}})
        started = time.monotonic()
        out = run(
            kube, helm, "install", name, ROOT / "deploy" / "helm" / "avmon", "-n", name,
            "-f", ROOT / "deploy" / "local-cluster-values.yaml", "-f", values,
            "--wait", "--timeout", "4m",
        )  # fmt: skip
        if out.returncode != 0:
            return name, 0.0, f"install: {out.stderr}"
        took = time.monotonic() - started
        test = run(kube, helm, "test", name, "-n", name, "--logs")
        if test.returncode != 0 or "/readyz 200" not in test.stdout:
            return name, took, f"helm test: {test.stdout}{test.stderr}"
        gone = run(kube, helm, "uninstall", name, "-n", name, "--wait")
        return name, took, "" if gone.returncode == 0 else f"uninstall: {gone.stderr}"

    with ThreadPoolExecutor(len(CI_VALUES)) as pool:
        results = list(pool.map(one, CI_VALUES))
    figure("ct_install_to_ready_s", {name: round(took, 1) for name, took, _ in results})
    failed = {name: why for name, _, why in results if why}
    assert not failed, failed
