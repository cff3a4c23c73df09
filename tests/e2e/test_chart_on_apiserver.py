"""The chart and the kustomize overlays against a real API server (issue 12): server-side
schema validation and admission -- PodSecurity ``restricted`` enforced on the namespace,
with no warnings -- through the real helm and kubectl (v1.35.4, built from its Go module).
No node runs the pods; what is checked is what the API server accepts and stores.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.apiserver import ROOT, ControlPlane, tool

CHART = ROOT / "deploy" / "helm" / "avmon"
OVERLAYS = ROOT / "deploy" / "kustomize" / "overlays"
RESTRICTED = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn", "audit")}


def run(cluster: ControlPlane, *cmd: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig())}
    argv = [str(c) for c in cmd]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def restricted_namespace(cluster: ControlPlane, name: str) -> None:
    from kubernetes import client

    body = {"metadata": {"name": name, "labels": RESTRICTED}}
    client.CoreV1Api(cluster.client()).create_namespace(body)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_applies_server_side_in_its_restricted_namespace(
    cluster: ControlPlane, overlay: str
) -> None:
    kubectl = tool("kubectl")
    # The overlay declares its Namespace; a dry run cannot place objects in a namespace
    # that does not exist yet, so that one object is applied for real first.
    ns = run(
        cluster, kubectl, "apply", "--server-side", "-f", OVERLAYS / overlay / "namespace.yaml"
    )
    assert ns.returncode == 0, ns.stderr
    out = run(
        cluster, kubectl, "apply", "--server-side", "--dry-run=server", "-k", OVERLAYS / overlay
    )
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr  # PodSecurity would warn here
    assert "deployment.apps/avmon serverside-applied (server dry run)" in out.stdout, out.stdout
    print(f"{overlay}: {len(out.stdout.splitlines())} objects accepted, no warnings")


def test_helm_install_is_accepted_and_upgrade_keeps_the_hpa_scale(cluster: ControlPlane) -> None:
    from kubernetes import client

    helm, ns = tool("helm"), "avmon-helm"
    restricted_namespace(cluster, ns)
    install = run(cluster, helm, "install", "avmon", CHART, "-n", ns)
    assert install.returncode == 0, install.stderr
    assert "Warning" not in install.stderr, install.stderr  # PodSecurity, deprecations
    apps = client.AppsV1Api(cluster.client())
    assert apps.read_namespaced_deployment("avmon", ns).spec.replicas == 2  # minReplicas
    kinds = run(cluster, helm, "get", "manifest", "avmon", "-n", ns)
    for kind in (
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "NetworkPolicy",
        "ValidatingAdmissionPolicy",
    ):
        assert f"kind: {kind}" in kinds.stdout, kind
    # The HPA scales the Deployment; an upgrade must not undo it.
    apps.patch_namespaced_deployment_scale("avmon", ns, {"spec": {"replicas": 5}})
    upgrade = run(
        cluster, helm, "upgrade", "avmon", CHART, "-n", ns, "--set", "config.noSignalSeconds=6"
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert apps.read_namespaced_deployment("avmon", ns).spec.replicas == 5
    uninstall = run(cluster, helm, "uninstall", "avmon", "-n", ns)
    assert uninstall.returncode == 0, uninstall.stderr
