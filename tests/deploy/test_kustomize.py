"""deploy/kustomize: every overlay builds with the real kustomize v5 and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import KUSTOMIZE, OVERLAYS, docs, run
from tests.deploy.test_chart import validate_strict

KINDS = {
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Role",
    "RoleBinding",
}


def test_overlays_exist() -> None:
    assert {p.name for p in OVERLAYS} >= {"dev", "prod"}


def test_no_deprecated_kustomize_fields() -> None:
    for f in KUSTOMIZE.rglob("kustomization.yaml"):
        text = f.read_text()
        for old in ("commonLabels:", "patchesStrategicMerge:", "patchesJson6902:", "bases:"):
            assert old not in text, f"{f}: {old} is deprecated in kustomize v5"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_builds_and_validates(kustomize: Path, overlay: Path) -> None:
    out = run([kustomize, "build", overlay])
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr
    objs = docs(out.stdout)
    assert {o["kind"] for o in objs} >= KINDS
    validate_strict(objs)
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    assert "replicas" not in dep["spec"]
    ns = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    assert len(ns) == 1 and None not in ns
    # The overlay creates the namespace it deploys into, PodSecurity "restricted".
    (namespace,) = [o for o in objs if o["kind"] == "Namespace"]
    assert {namespace["metadata"]["name"]} == ns
    ns_labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert ns_labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["environment"] == overlay.name
