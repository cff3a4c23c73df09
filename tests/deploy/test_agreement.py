"""The chart and the application agree: env vars, probes, port, metrics, RBAC."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from tests.deploy.conftest import CHART, CI_VALUES, ROOT, by_kind, docs, helm_template, run
from tests.integration.service_proc import Service

ALL_SCENARIOS = [[], *(["-f", str(f)] for f in CI_VALUES)]


@pytest.fixture(scope="module")
def all_objects(helm: Path, kustomize: Path) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for args in ALL_SCENARIOS:
        objs += docs(helm_template(helm, *args))
    for overlay in sorted((ROOT / "deploy" / "kustomize" / "overlays").iterdir()):
        out = run([kustomize, "build", overlay])
        assert out.returncode == 0, out.stderr
        objs += docs(out.stdout)
    return objs


def _app_containers(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for d in by_kind(objs, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["name"] == "avmon"
    ]


def test_every_avmon_env_var_is_a_setting(all_objects: list[dict[str, Any]]) -> None:
    fields = {f"AVMON_{name.upper()}" for name in Settings.model_fields}
    names: set[str] = set()
    env_from: set[str] = set()
    for c in _app_containers(all_objects):
        names |= {e["name"] for e in c.get("env", [])}
        env_from |= {e["configMapRef"]["name"] for e in c.get("envFrom", [])}
    for cm in by_kind(all_objects, "ConfigMap"):
        if cm["metadata"]["name"] in env_from:
            names |= set(cm.get("data", {}))
    avmon = {n for n in names if n.startswith("AVMON_")}
    assert {"AVMON_POD_NAME", "AVMON_REDIS_URL", "AVMON_K8S_DELETION_COST"} <= avmon
    assert avmon <= fields, f"not Settings fields: {sorted(avmon - fields)}"
    # Other variables: what service/k8s.py reads, or what the chart's own $(NAME)
    # expansions use (the bundled Redis password inside AVMON_REDIS_URL).
    others = {n for n in names if not n.startswith("AVMON_")}
    k8s_src = (ROOT / "service" / "k8s.py").read_text()
    values = " ".join(
        str(e.get("value", "")) for c in _app_containers(all_objects) for e in c.get("env", [])
    )
    for n in others:
        used = f'"{n}"' in k8s_src or f"$({n})" in values
        assert used, f"{n} is set by the chart but read by nobody"


def test_configmap_values_are_accepted_by_settings(all_objects: list[dict[str, Any]]) -> None:
    for cm in by_kind(all_objects, "ConfigMap"):
        data = {k: v for k, v in cm.get("data", {}).items() if k.startswith("AVMON_")}
        if data:
            Settings(**{k.removeprefix("AVMON_").lower(): v for k, v in data.items()})


def test_probe_paths_and_port_exist_in_the_app(all_objects: list[dict[str, Any]]) -> None:
    from service.api.app import create_app

    paths = set(create_app(Settings()).openapi()["paths"])
    port_default = Settings.model_fields["port"].default
    containers = _app_containers(all_objects)
    assert containers
    for c in containers:
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": port_default}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] in paths, f"{probe} {get['path']} is not an app route"
            assert get["port"] == "http"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"EXPOSE {port_default}" in dockerfile
    assert f'"--port", "{port_default}"' in dockerfile


def _k8s_calls() -> set[tuple[str, str]]:
    """(verb, resource) for every kubernetes client call `api.<verb>_namespaced_<res>`."""
    tree = ast.parse((ROOT / "service" / "k8s.py").read_text())
    calls = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            verbs = "read|get|list|watch|create|replace|update|patch|delete"
            m = re.fullmatch(rf"({verbs})_namespaced_(\w+)", node.attr)
            if m:
                verb = {"read": "get", "replace": "update"}.get(m[1], m[1])
                calls.add((verb, m[2] + "s"))
    return calls


def test_role_grants_exactly_what_k8s_py_calls(all_objects: list[dict[str, Any]]) -> None:
    needed = _k8s_calls()
    assert needed == {("patch", "pods")}
    roles = by_kind(all_objects, "Role")
    assert roles
    for role in roles:
        granted = {
            (verb, res)
            for rule in role["rules"]
            for verb in rule["verbs"]
            for res in rule["resources"]
            if rule["apiGroups"] == [""]
        }
        assert granted == needed, role["metadata"]["name"]
        assert all(r["apiGroups"] == [""] for r in role["rules"])
    for binding in by_kind(all_objects, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
    assert not by_kind(all_objects, "ClusterRole")


def _queried_metrics(text: str) -> set[str]:
    return set(re.findall(r"\b(avmon_[a-z0-9_]+)\b", text))


@pytest.fixture(scope="module")
def exported_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Sample names a running `avmon serve` exposes on /metrics (with _bucket etc.)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    svc = Service(tmp_path_factory.mktemp("serve"))
    try:
        with urllib.request.urlopen(svc.base + "/metrics", timeout=10) as resp:
            body = resp.read().decode()
    finally:
        svc.stop()
    names = set()
    for fam in text_string_to_metric_families(body):
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["_sum", "_count", ""],
        }.get(fam.type, [""])
        names |= {fam.name + s for s in suffixes}
    return names


def test_rules_and_dashboard_query_only_exported_metrics(
    helm: Path, exported_metrics: set[str]
) -> None:
    objs = docs(helm_template(helm, "-f", str(CHART / "ci" / "monitoring-on-values.yaml")))
    (rule,) = by_kind(objs, "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    dashboard = (CHART / "dashboards" / "avmon.json").read_text()
    queried = _queried_metrics(exprs) | _queried_metrics(dashboard)
    assert len(queried) >= 10
    missing = queried - exported_metrics
    assert not missing, f"queried but not exported by avmon serve: {sorted(missing)}"


def test_no_service_links_reach_our_settings(all_objects: list[dict[str, Any]]) -> None:
    """A Service named avmon makes Kubernetes set AVMON_PORT=tcp://<ip>:8080 in every pod
    of the namespace unless service links are off: the app then refused to start on a
    real cluster. Every avmon pod spec turns them off, and the setting names the cause."""
    specs = [
        o["spec"]["template"]["spec"]
        for o in all_objects
        if o["kind"] == "Deployment" and "avmon" in o["metadata"]["name"]
    ]
    assert specs and all(spec.get("enableServiceLinks") is False for spec in specs)
    with pytest.raises(ValueError, match="enableServiceLinks"):
        Settings(port="tcp://10.96.31.240:8080")  # type: ignore[arg-type]
