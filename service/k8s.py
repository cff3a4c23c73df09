"""Kubernetes awareness -- the only module that imports ``kubernetes``.

Each pod keeps its ``controller.kubernetes.io/pod-deletion-cost`` annotation equal to its
load (units owned), so an HPA scale-in removes the cheapest pod. Kubernetes asks that
the annotation not be updated often: it is patched only when the load changed, and at
most every ``MIN_INTERVAL_S``; a change inside that window is applied when it ends.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
MIN_INTERVAL_S = 10.0
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

Patch = Callable[[str, str, dict[str, Any]], None]  # (namespace, pod, body)


class DeletionCost:
    def __init__(
        self,
        pod: str,
        namespace: str,
        patch: Patch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pod = pod
        self.namespace = namespace
        self.patch = patch
        self.clock = clock
        self.value: int | None = None  # what the annotation says now
        self.patched_at: float | None = None

    def update(self, load: float) -> bool:
        """Call often (every coordinator tick); patches only when due. True if patched."""
        cost = round(load)
        if cost == self.value:
            return False
        now = self.clock()
        if self.patched_at is not None and now - self.patched_at < MIN_INTERVAL_S:
            return False
        body = {"metadata": {"annotations": {ANNOTATION: str(cost)}}}
        try:
            self.patch(self.namespace, self.pod, body)
        except Exception as exc:  # the API server may be briefly unavailable: retry later
            log.warning("could not set %s on %s: %s", ANNOTATION, self.pod, exc)
            self.patched_at = now
            return False
        self.value, self.patched_at = cost, now
        return True


def pod_patcher(api_client: Any = None) -> Patch:
    """The API call DeletionCost makes: a merge patch of one pod (``api_client``: a
    kubernetes.client.ApiClient; None = the configured default)."""
    from kubernetes import client

    api = client.CoreV1Api(api_client)

    def patch(ns: str, name: str, body: dict[str, Any]) -> None:
        api.patch_namespaced_pod(name=name, namespace=ns, body=body)

    return patch


def in_cluster(pod: str) -> DeletionCost:
    """A DeletionCost patching this pod through the in-cluster service account."""
    from kubernetes import config

    config.load_incluster_config()
    namespace = os.environ.get("POD_NAMESPACE") or NAMESPACE_FILE.read_text().strip()
    return DeletionCost(pod, namespace, pod_patcher())
