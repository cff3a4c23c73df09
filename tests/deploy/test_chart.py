"""The Helm chart, checked with the real helm, kubernetes-validate and promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    CHART,
    CI_VALUES,
    MONITORING_API,
    by_kind,
    docs,
    helm_template,
    run,
    venv_tool,
)

# Newest Kubernetes the installed kubernetes-validate knows, and one >= 3 minors older.
K8S_OLD = "1.33.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # no schema in kubernetes-validate


def k8s_versions() -> list[str]:
    from kubernetes_validate.utils import latest_version

    return [latest_version(), K8S_OLD]


def validate_strict(objs: list[dict[str, Any]]) -> None:
    """Every object validates strictly against each Kubernetes version; CRD kinds are
    skipped only because kubernetes-validate has no schema for them (checked elsewhere)."""
    from kubernetes_validate import utils

    newest = utils.latest_version()
    assert int(newest.split(".")[1]) - int(K8S_OLD.split(".")[1]) >= 3
    errors = []
    for version in k8s_versions():
        for obj in objs:
            if obj["kind"] in CRD_KINDS:
                continue
            try:
                utils.validate(obj, version, strict=True)
            except utils.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                errors.append(f"{version} {obj['kind']}/{obj['metadata']['name']}: {path}: {exc}")
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, list[dict[str, Any]]]:
    out = {"chart-defaults": docs(helm_template(helm))}
    for f in CI_VALUES:
        out[f.name] = docs(helm_template(helm, "-f", str(f)))
    return out


def test_ci_scenarios_exist() -> None:
    names = {f.name for f in CI_VALUES}
    assert {
        "default-values.yaml",
        "external-redis-values.yaml",
        "autoscaling-off-values.yaml",
        "monitoring-on-values.yaml",
    } <= names


LINTCONF = CHART.parent / "lintconf.yaml"
CHART_SCHEMA = CHART.parent / "chart_schema.yaml"


def _ct_lint_yaml(chart_yaml: Path) -> subprocess.CompletedProcess[str]:
    """What chart-testing's `ct lint` runs besides `helm lint`: yamale on Chart.yaml
    against the chart schema (strict: no unknown fields), yamllint on the chart's own
    YAML -- the same two tools ct calls."""
    yamale, yamllint = venv_tool("yamale"), venv_tool("yamllint")
    assert yamale and yamllint, "pip install -e '.[dev]' (scripts/setup --tests)"
    checked = run([yamale, "-s", CHART_SCHEMA, chart_yaml])
    if checked.returncode:
        return checked
    files = [chart_yaml, CHART / "values.yaml", *CI_VALUES]
    return run([yamllint, "--strict", "-c", LINTCONF, *files])


def test_ct_lint_yamale_and_yamllint_pass(tmp_path: Path) -> None:
    out = _ct_lint_yaml(CHART / "Chart.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    # ... and they can fail: a misspelt field, a version that is not SemVer.
    for good, bad in (("appVersion:", "appversion:"), ("version: ", "version: v")):
        broken = tmp_path / good.strip(": ") / "Chart.yaml"
        broken.parent.mkdir()
        broken.write_text((CHART / "Chart.yaml").read_text().replace(good, bad, 1))
        assert _ct_lint_yaml(broken).returncode != 0, bad


def test_helm_lint_strict(helm: Path) -> None:
    for args in [[], *(["-f", str(f)] for f in CI_VALUES)]:
        out = run([helm, "lint", "--strict", CHART, *args])
        assert out.returncode == 0, out.stdout + out.stderr
        assert "[WARNING]" not in out.stdout, out.stdout


@pytest.mark.parametrize("scenario", ["chart-defaults", *(f.name for f in CI_VALUES)])
def test_rendered_manifests_validate_strictly(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    objs = rendered[scenario]
    assert objs
    validate_strict(objs)


def test_default_render_kinds(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {o["kind"] for o in rendered["chart-defaults"]}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "StatefulSet",
        "ConfigMap",
        "Pod",
    } <= kinds
    # Monitoring objects only on request.
    assert not kinds & CRD_KINDS


def _deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = by_kind(objs, "Deployment")
    return dep


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_deployment_autoscaling_and_handoff(rendered: dict[str, list[dict[str, Any]]]) -> None:
    dep = _deployment(rendered["chart-defaults"])
    # Installed at the HPA's minimum (`helm install --wait` waits for that many pods); on
    # upgrade the template reads the live count back (lookup), so the HPA's scale stays.
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]
    assert "checksum/config" in pod["metadata"]["annotations"]
    (c,) = pod["spec"]["containers"]
    env = _env(c)
    assert env["AVMON_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # The bundled Redis requires a password, expanded by the kubelet from the Secret.
    assert env["AVMON_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@avmon-redis:6379/0"
    (hpa,) = by_kind(rendered["chart-defaults"], "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    assert c["resources"]["requests"]["cpu"]
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert pod["spec"]["terminationGracePeriodSeconds"] >= int(sleep[1]) + 3 * 3 + 5
    (pdb,) = by_kind(rendered["chart-defaults"], "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1

    off = _deployment(rendered["autoscaling-off-values.yaml"])
    assert off["spec"]["replicas"] == 3
    assert not by_kind(rendered["autoscaling-off-values.yaml"], "HorizontalPodAutoscaler")


def test_external_redis_comes_from_a_secret(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objs = rendered["external-redis-values.yaml"]
    assert not by_kind(objs, "StatefulSet"), "no bundled Redis when an external URL is given"
    (c,) = _deployment(objs)["spec"]["template"]["spec"]["containers"]
    env = _env(c)
    ref = env["AVMON_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    (secret,) = by_kind(objs, "Secret")
    assert ref["name"] == secret["metadata"]["name"]
    assert secret["stringData"][ref["key"]].startswith("redis://")
    assert env["AVMON_API_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]


def _containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            spec = o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            spec = o["spec"]
        else:
            continue
        out += [(f"{o['kind']}/{c['name']}", spec, c) for c in spec["containers"]]
    return out


@pytest.mark.parametrize("scenario", ["chart-defaults", *(f.name for f in CI_VALUES)])
def test_every_container_is_hardened(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    found = _containers(rendered[scenario])
    assert len(found) >= 2  # avmon + helm test pod (+ redis)
    for name, pod, c in found:
        sc = {**pod.get("securityContext", {}), **c["securityContext"]}
        assert sc["runAsNonRoot"] is True, name
        assert sc.get("runAsUser", 0) != 0, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert c["resources"]["requests"].get("cpu") or (
            scenario == "autoscaling-off-values.yaml" and name == "Deployment/avmon"
        ), f"{name}: CPU request"
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if not name.startswith("Pod/"):
            assert "/tmp" in mounts, f"{name}: writable /tmp"
    avmon = [(p, c) for n, p, c in found if n == "Deployment/avmon"]
    assert avmon[0][0]["securityContext"]["runAsUser"] == 10001


def test_helm_test_hook_calls_readyz(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (pod,) = by_kind(rendered["chart-defaults"], "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Deleted before the next run, not on success: `helm test --logs` reads it after.
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    script = " ".join(pod["spec"]["containers"][0]["command"])
    assert "http://avmon:8080/readyz" in script


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_only_the_monitor_pods_match_the_monitor_selectors(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The Service, PDB, HPA (the Deployment's selector) and NetworkPolicy select the
    monitor pods and nothing else: a helm test pod or Redis behind the Service would get
    API calls; in the HPA's average, skew it."""
    for name, objs in rendered.items():
        pods = {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["labels"]
                for o in by_kind(objs, "Pod")}  # fmt: skip
        for kind in ("Deployment", "StatefulSet"):
            for o in by_kind(objs, kind):
                template = o["spec"]["template"]["metadata"]
                pods[f"{kind}/{o['metadata']['name']}"] = template["labels"]
        selectors = [("Deployment", o["spec"]["selector"]["matchLabels"])
                     for o in by_kind(objs, "Deployment")]  # fmt: skip
        selectors += [("Service", o["spec"]["selector"]) for o in by_kind(objs, "Service")
                      if o["metadata"]["name"] == "avmon"]  # fmt: skip
        selectors += [("PodDisruptionBudget", o["spec"]["selector"]["matchLabels"])
                      for o in by_kind(objs, "PodDisruptionBudget")]  # fmt: skip
        selectors += [("NetworkPolicy", o["spec"]["podSelector"]["matchLabels"])
                      for o in by_kind(objs, "NetworkPolicy")]  # fmt: skip
        assert any(k == "Pod" for k in (p.split("/")[0] for p in pods)), name
        for kind, selector in selectors:
            picked = sorted(p for p, labels in pods.items() if _matches(selector, labels))
            redis = selector.get("app.kubernetes.io/component") == "redis"  # its own policy
            want = ["StatefulSet/avmon-redis"] if redis else ["Deployment/avmon"]
            assert picked == want, (name, kind, selector, picked)


def test_autoscaling_without_cpu_request_fails_clearly(helm: Path) -> None:
    out = run([helm, "template", "avmon", CHART, "--set", "resources.requests.cpu=null"])
    assert out.returncode != 0
    assert "autoscaling.enabled=true needs resources.requests.cpu" in out.stderr
    out = run([helm, "template", "avmon", CHART, "--set", "terminationGracePeriodSeconds=5"])
    assert out.returncode != 0
    assert "too short for the handoff" in out.stderr


def test_values_schema_rejects_typos_and_wrong_types(helm: Path) -> None:
    typo = run([helm, "template", "avmon", CHART, "--set", "autoscaling.enabeld=false"])
    assert typo.returncode != 0
    assert "additional properties 'enabeld' not allowed" in typo.stderr, typo.stderr
    assert "/autoscaling" in typo.stderr
    top = run([helm, "template", "avmon", CHART, "--set", "replicas=3"])
    assert top.returncode != 0
    assert "additional properties 'replicas' not allowed" in top.stderr, top.stderr
    wrong = run([helm, "template", "avmon", CHART, "--set-string", "replicaCount=two"])
    assert wrong.returncode != 0
    assert "/replicaCount" in wrong.stderr
    assert "got string, want integer" in wrong.stderr, wrong.stderr
    # Every value the chart documents is covered by the schema, and the schema is JSON.
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


def test_monitoring_needs_the_crds(helm: Path) -> None:
    values = str(CHART / "ci" / "monitoring-on-values.yaml")
    without = docs(helm_template(helm, "-f", values, api_versions=False))
    assert not {o["kind"] for o in without} & CRD_KINDS
    with_crds = docs(helm_template(helm, "-f", values))
    assert {o["kind"] for o in with_crds} >= CRD_KINDS
    (sm,) = by_kind(with_crds, "ServiceMonitor")
    assert sm["apiVersion"] == MONITORING_API
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def _rule(helm: Path) -> dict[str, Any]:
    objs = docs(helm_template(helm, "-f", str(CHART / "ci" / "monitoring-on-values.yaml")))
    (rule,) = by_kind(objs, "PrometheusRule")
    return rule


def test_prometheus_rules_pass_promtool(helm: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; scripts/setup)")
    rule = _rule(helm)
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "AvmonStreamDown",
        "AvmonUnitsWithoutOwner",
        "AvmonFramesDropped",
        "AvmonAutoscalerAtMax",
        "AvmonDetectorFailing",
    }
    f = tmp_path / "rules.yaml"
    f.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = run([promtool, "check", "rules", f])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 5 rules found" in out.stdout, out.stdout


def test_a_failing_detector_alerts_and_a_quiet_one_does_not(helm: Path, tmp_path: Path) -> None:
    """promtool evaluates the rendered rule on series: a detector whose failures count
    up alerts (per detector), one whose counter stands still does not."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; scripts/setup)")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _rule(helm)["spec"]["groups"]}))
    series = 'avmon_detector_errors_total{{namespace="avmon", service="avmon", detector="{}"}}'
    case = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": series.format("loudness"),
                        "values": "0 0 0 3 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5",
                    },
                    {
                        "series": series.format("black"),
                        "values": "0x20",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "AvmonDetectorFailing", "exp_alerts": []},
                    {
                        "eval_time": "5m",
                        "alertname": "AvmonDetectorFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "avmon",
                                    "service": "avmon",
                                    "detector": "loudness",
                                },
                                "exp_annotations": {
                                    "summary": "avmon detector loudness fails on some input",
                                    "description": "It skipped the inputs it raised on, so "
                                    "its defects may be missed. The pod log has the first "
                                    "traceback (detector ... failed).",
                                },
                            }
                        ],
                    },
                    # Ten minutes without a new failure: resolved.
                    {"eval_time": "16m", "alertname": "AvmonDetectorFailing", "exp_alerts": []},
                ],
            }
        ],
    }
    test = tmp_path / "test.yaml"
    test.write_text(yaml.safe_dump(case))
    out = run([promtool, "test", "rules", test])
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_is_valid_json_with_the_required_sections(helm: Path) -> None:
    raw = (CHART / "dashboards" / "avmon.json").read_text()
    dash = json.loads(raw)
    rows = {p["title"] for p in dash["panels"] if p["type"] == "row"}
    assert {
        "Fleet overview",
        "Per-stream health",
        "Defects",
        "Pipeline saturation (what the HPA sees)",
        "Coordinator balance",
    } <= rows
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    objs = docs(helm_template(helm, "-f", str(CHART / "ci" / "monitoring-on-values.yaml")))
    (cm,) = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("dashboard")]
    assert json.loads(cm["data"]["avmon.json"]) == dash
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_notes_explain_reaching_the_api_and_registering_a_stream(
    helm: Path, tmp_path: Path
) -> None:
    # `helm install --dry-run` wants a cluster: render NOTES.txt with `tpl` in a copy.
    chart = tmp_path / "avmon"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes-src.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ tpl (.Files.Get "notes-src.txt") . | quote }}\n'
    )
    out = run(
        [helm, "template", "avmon", chart, "-n", "avmon", "--show-only", "templates/zz-notes.yaml"]
    )
    assert out.returncode == 0, out.stderr
    notes = yaml.safe_load(out.stdout)["data"]["notes"]
    assert "kubectl -n avmon port-forward svc/avmon 8080:8080" in notes
    assert "curl -s -X POST $AVMON/api/v1/streams" in notes
    assert "curl -s $AVMON/readyz" in notes
    assert "{{" not in notes


def test_bundled_redis_is_scheduled_like_the_monitor(helm: Path) -> None:
    """nodeSelector, tolerations and affinity reach the Redis StatefulSet too (they were
    ignored there); redis.bundled.* overrides each."""
    args = [
        "--set",
        "nodeSelector.disk=ssd",
        "--set",
        "tolerations[0].key=dedicated",
        "--set",
        "tolerations[0].operator=Exists",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key=zone",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
    ]
    objs = docs(helm_template(helm, *args))
    (redis,) = by_kind(objs, "StatefulSet")
    spec = redis["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert "nodeAffinity" in spec["affinity"]
    own = docs(helm_template(helm, *args, "--set", "redis.bundled.nodeSelector.disk=hdd"))
    (redis,) = by_kind(own, "StatefulSet")
    assert redis["spec"]["template"]["spec"]["nodeSelector"] == {"disk": "hdd"}
