"""Fixtures for the packaging tests: the real helm / kustomize (built by scripts/tools),
kubernetes-validate, promtool and hadolint. A tool that truly cannot be had skips the
tests that need it, with the reason."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "avmon"
KUSTOMIZE = ROOT / "deploy" / "kustomize"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
OVERLAYS = sorted(p.parent for p in (KUSTOMIZE / "overlays").glob("*/kustomization.yaml"))
MONITORING_API = "monitoring.coreos.com/v1"


def _tool(name: str) -> Path:
    """Path of a pinned tool from scripts/tools (builds it on first use)."""
    try:
        out = subprocess.run(
            [str(ROOT / "scripts" / "tools"), name],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"scripts/tools {name} could not run: {exc}")
    if out.returncode != 0:
        pytest.skip(f"scripts/tools {name} could not build {name}: {out.stderr.strip()[-800:]}")
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def helm() -> Path:
    return _tool("helm")


@pytest.fixture(scope="session")
def kustomize() -> Path:
    return _tool("kustomize")


def venv_tool(name: str) -> str | None:
    """A console script of this venv (kubernetes-validate, hadolint), else PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def run(cmd: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=300, check=False, **kw
    )


def helm_template(helm: Path, *args: str, api_versions: bool = True) -> str:
    cmd: list[str | Path] = [helm, "template", "avmon", CHART, "--namespace", "avmon"]
    if api_versions:
        cmd += ["--api-versions", MONITORING_API]
    out = run([*cmd, *args])
    assert out.returncode == 0, out.stderr
    return out.stdout


class _UniqueKeyLoader(yaml.SafeLoader):
    """Refuses a mapping that names a key twice: PyYAML keeps the last, other parsers
    the first or an error, so a rendered duplicate means different objects to
    different tools (the helm test pod once carried two ``component`` labels)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            assert key not in seen, f"key {key!r} twice in one mapping, {key_node.start_mark}"
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=_UniqueKeyLoader) if d]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]
