"""service/k8s.py against a real API server, with the chart's own RBAC (issue 12).

etcd and kube-apiserver v1.35.4 built from their Go modules (tests/e2e/apiserver.py);
the chart rendered by the real helm into the test's namespace; the service account's
token bound to one pod, as the kubelet mounts it. The pod-deletion-cost client patches
its own pod; every other call -- another pod, its own pod's labels, listing, deleting,
reading Secrets -- is refused.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.k8s import ANNOTATION, DeletionCost, pod_patcher
from tests.e2e.apiserver import ISSUER, ROOT, ControlPlane, tool
from tests.integration.service_proc import wait_for

NS = "avmon-e2e"
KINDS = (
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


def chart_rbac(*values: str) -> list[dict[str, Any]]:
    helm = tool("helm")
    out = subprocess.run(
        [str(helm), "template", "avmon", str(ROOT / "deploy/helm/avmon"), "-n", NS, *values],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] in KINDS]


@pytest.fixture(scope="module")
def installed(cluster: ControlPlane) -> dict[str, Any]:
    """The chart's RBAC in the namespace, two pods of its service account, and a token
    bound to the first (what the kubelet mounts into that pod)."""
    from kubernetes import client, utils

    admin = cluster.client()
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": NS}})
    objs = chart_rbac()
    assert sorted({o["kind"] for o in objs}) == sorted(KINDS)
    for obj in objs:
        utils.create_from_dict(admin, obj, namespace=NS)
    (sa,) = [o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"]
    pods = {}
    for name in ("avmon-a", "avmon-b"):
        body = {
            "metadata": {"name": name, "labels": {"app": "avmon"}},
            "spec": {
                "serviceAccountName": sa,
                "containers": [{"name": "avmon", "image": "avmon:e2e"}],
            },
        }
        pods[name] = core.create_namespaced_pod(NS, body)
    own = pods["avmon-a"]
    request = {
        "spec": {
            "audiences": [ISSUER],
            "expirationSeconds": 3600,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": own.metadata.name,
                "uid": own.metadata.uid,
            },
        }
    }
    token = core.create_namespaced_service_account_token(sa, NS, request).status.token
    # The API server loads admission policies asynchronously (~1 s): wait until a
    # dry-run patch of the neighbour is refused before testing anything.
    as_pod = client.CoreV1Api(cluster.client(token))
    probe = {"metadata": {"annotations": {"probe": "1"}}}

    def enforced() -> bool:
        return (
            _status(lambda: as_pod.patch_namespaced_pod("avmon-b", NS, probe, dry_run="All")) == 403
        )

    assert wait_for(enforced, 30), "the chart's admission policy never took effect"
    return {"token": token, "sa": sa}


def _status(call: Any) -> int:
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_pod_deletion_cost_patches_its_own_pod(
    cluster: ControlPlane, installed: dict[str, Any]
) -> None:
    from kubernetes import client

    cost = DeletionCost("avmon-a", NS, pod_patcher(cluster.client(installed["token"])))
    assert cost.update(7)
    pod = client.CoreV1Api(cluster.client()).read_namespaced_pod("avmon-a", NS)
    assert pod.metadata.annotations[ANNOTATION] == "7"


def test_every_other_call_is_refused(cluster: ControlPlane, installed: dict[str, Any]) -> None:
    from kubernetes import client

    pods = client.CoreV1Api(cluster.client(installed["token"]))
    note = {"metadata": {"annotations": {ANNOTATION: "1"}}}
    # Another pod of the same service account: RBAC allows patching pods, the chart's
    # admission policy narrows it to the caller's own.
    assert _status(lambda: pods.patch_namespaced_pod("avmon-b", NS, note)) == 403
    other = DeletionCost("avmon-b", NS, pod_patcher(cluster.client(installed["token"])))
    assert not other.update(9)  # refused, logged, retried later: never raises
    # Its own pod, but not an annotation.
    relabel = {"metadata": {"labels": {"app": "mine"}}}
    assert _status(lambda: pods.patch_namespaced_pod("avmon-a", NS, relabel)) == 403
    # Nothing else at all (RBAC).
    assert _status(lambda: pods.list_namespaced_pod(NS)) == 403
    assert _status(lambda: pods.read_namespaced_pod("avmon-a", NS)) == 403
    assert _status(lambda: pods.delete_namespaced_pod("avmon-b", NS)) == 403
    assert _status(lambda: pods.list_namespaced_secret(NS)) == 403
    admin = client.CoreV1Api(cluster.client())
    b = admin.read_namespaced_pod("avmon-b", NS)
    assert ANNOTATION not in (b.metadata.annotations or {})
    assert admin.read_namespaced_pod("avmon-a", NS).metadata.labels == {"app": "avmon"}


def test_without_the_policy_rbac_alone_lets_a_pod_patch_its_neighbour(
    cluster: ControlPlane, installed: dict[str, Any]
) -> None:
    """Why the policy ships: with ``rbac.ownPodOnly=false`` the same token patches
    another pod (this test removes the policy for good: it runs last)."""
    from kubernetes import client

    admission = client.AdmissionregistrationV1Api(cluster.client())
    for obj in chart_rbac():
        if obj["kind"] == "ValidatingAdmissionPolicyBinding":
            admission.delete_validating_admission_policy_binding(obj["metadata"]["name"])
    assert not [o for o in chart_rbac("--set", "rbac.ownPodOnly=false") if "Admission" in o["kind"]]
    pods = client.CoreV1Api(cluster.client(installed["token"]))
    note = {"metadata": {"annotations": {ANNOTATION: "1"}}}

    def neighbour_patched() -> bool:
        return _status(lambda: pods.patch_namespaced_pod("avmon-b", NS, note)) == 200

    assert wait_for(neighbour_patched, 15), "the policy's removal never took effect"


def test_tools_are_the_pinned_release(cluster: ControlPlane) -> None:
    from kubernetes import client

    version = client.VersionApi(cluster.client()).get_code()
    assert version.git_version == "v1.35.4"
    assert (Path(tool("etcd")).parent / "kube-apiserver").exists()
