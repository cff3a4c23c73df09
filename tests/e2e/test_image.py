"""The real avmon image without Docker (issue 12): scripts/image builds the repository's
own Dockerfile with buildah, on a Debian python3 base made by mmdebstrap, wheels fetched
on the host. What the Dockerfile's runtime stage declares is what the image carries, the
packages are the versions this checkout resolves, and avmon inside it analyses a clip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClipFactory
from tests.e2e.apiserver import ROOT

WORK = ROOT / ".tools" / "image"
TAG = "e2e"
PACKAGES = ("av", "numpy", "fastapi", "pydantic", "uvicorn", "redis", "prometheus-client")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (image build, containers, mounts)"),
    pytest.mark.skipif(
        not (shutil.which("buildah") and shutil.which("mmdebstrap")),
        reason="needs Debian's buildah and mmdebstrap (scripts/setup --tests installs them)",
    ),
]


def buildah(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["buildah", "--root", f"{WORK}/storage", "--runroot", f"{WORK}/run"]
    cmd += ["--storage-driver", "vfs", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image"), TAG], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == f"localhost/avmon:{TAG}"
    yield f"localhost/avmon:{TAG}"


@pytest.fixture
def container(image: str) -> Iterator[str]:
    ctr = buildah("from", image).stdout.strip()
    try:
        yield ctr
    finally:
        buildah("rm", ctr)


def runtime_stage() -> dict[str, Any]:
    """USER, WORKDIR, EXPOSE, CMD and ENV of the Dockerfile's last stage."""
    lines, joined = (ROOT / "Dockerfile").read_text().splitlines(), []
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line.strip())
    stage = joined[max(i for i, line in enumerate(joined) if line.startswith("FROM ")) :]
    out: dict[str, Any] = {"env": {}}
    for line in stage:
        word, _, rest = line.partition(" ")
        if word == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                out["env"][key] = value
        elif word in ("USER", "WORKDIR", "EXPOSE"):
            out[word.lower()] = rest.strip()
        elif word == "CMD":
            out["cmd"] = json.loads(rest)
    return out


def test_image_config_is_what_the_dockerfile_declares(image: str) -> None:
    doc = json.loads(buildah("inspect", "--type", "image", image).stdout)
    config = doc["OCIv1"]["config"]
    want = runtime_stage()
    # HEALTHCHECK survives (Docker image format): the /healthz probe the Dockerfile runs.
    health = doc["Docker"]["config"]["Healthcheck"]
    assert "/healthz" in " ".join(health["Test"]) and health["Interval"] == 15 * 10**9
    assert config["User"] == want["user"] == "10001:10001"
    assert config["Cmd"] == want["cmd"] and config["Cmd"][:2] == ["uvicorn", "--factory"]
    assert config.get("Entrypoint") is None
    assert config["WorkingDir"] == want["workdir"]
    assert f"{want['expose']}/tcp" in config["ExposedPorts"]
    env = dict(item.split("=", 1) for item in config["Env"])
    for key, value in want["env"].items():
        if key == "PATH":
            assert env["PATH"].startswith("/opt/avmon/bin:")
        else:
            assert env[key] == value, key


def test_packages_and_python_are_the_checkouts(container: str) -> None:
    code = (
        "import json, os, sys; from importlib import metadata; "
        f"print(json.dumps({{'python': sys.version_info[:2], 'uid': os.getuid(), "
        f"'packages': {{p: metadata.version(p) for p in {PACKAGES!r}}}}}))"
    )
    got = json.loads(
        buildah("run", "--isolation", "chroot", container, "--", "python", "-c", code).stdout
    )
    assert tuple(got["python"]) == (3, 11)
    assert got["uid"] == 10001
    assert got["packages"] == {p: metadata.version(p) for p in PACKAGES}


def test_avmon_in_the_image_analyses_a_clip(
    container: str, make_clip: ClipFactory, tmp_path: Path
) -> None:
    clip, _ = make_clip("black@1-3", duration=5.0, size="320x180")
    shutil.copy(clip, tmp_path / "clip.ts")
    tmp_path.chmod(0o755)
    (tmp_path / "clip.ts").chmod(0o644)
    out = buildah(
        "run", "--isolation", "chroot", "-v", f"{tmp_path}:/media:ro", container,
        "--", "avmon", "check", "/media/clip.ts", "--json", "--detectors", "black",
    )  # fmt: skip
    defects = json.loads(out.stdout)["defects"]
    assert [(d["type"], round(d["start"], 1), round(d["end"], 1)) for d in defects] == [
        ("black", 1.0, 3.0)
    ]


def test_the_code_in_the_image_is_the_checkouts(container: str) -> None:
    """Every module of the package byte for byte, and the server's app importable: a
    stale build directory once left the dependency layer's empty service/__init__.py in
    the image, and every pod crashed on start while `avmon check` still ran."""
    code = (
        "import hashlib, json, pathlib, service, service.api.app; "
        "root = pathlib.Path(service.__file__).parent; "
        "print(json.dumps({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()"
        " for p in sorted(root.rglob('*.py'))}))"
    )
    got = json.loads(
        buildah("run", "--isolation", "chroot", container, "--", "python", "-c", code).stdout
    )
    source = ROOT / "service"
    want = {
        str(p.relative_to(source)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(source.rglob("*.py"))
    }
    assert got == want
