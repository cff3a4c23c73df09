"""The chart is secure by default (DESIGN.md section 8), checked by *running* what it
renders: the default install's avmon container env (its ConfigMap, Secret references and
$(VAR) expansions resolved as a kubelet would) starts a real `avmon serve` against a real
redis-server started with the bundled Redis's own arguments."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.deploy.conftest import by_kind, docs, helm_template
from tests.integration.cluster import RedisServer
from tests.integration.service_proc import Service


def _container_env(objs: list[dict[str, Any]], kind: str) -> dict[str, str]:
    """The first container's environment as the kubelet would set it."""
    (workload,) = by_kind(objs, kind)
    container = workload["spec"]["template"]["spec"]["containers"][0]
    secrets = {s["metadata"]["name"]: s.get("stringData", {}) for s in by_kind(objs, "Secret")}
    maps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind(objs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            value = secrets[ref["name"]][ref["key"]]
        else:  # fieldRef: the pod's name and namespace
            value = "avmon-test-0"
        env[var["name"]] = str(value)
    return env


@pytest.fixture(scope="module")
def rendered(helm: Path) -> list[dict[str, Any]]:
    return docs(helm_template(helm))


def test_default_install_renders_a_token_secret_and_redis_auth(
    rendered: list[dict[str, Any]],
) -> None:
    (secret,) = by_kind(rendered, "Secret")
    data = secret["stringData"]
    assert len(data["api-token"]) >= 32 and len(data["redis-password"]) >= 32
    redis_args = _redis_args(rendered)
    assert "--requirepass" in redis_args
    env = _container_env(rendered, "Deployment")
    assert env["AVMON_API_TOKEN"] == data["api-token"]
    assert f":{data['redis-password']}@" in env["AVMON_REDIS_URL"]
    assert by_kind(rendered, "NetworkPolicy")  # on by default


def _redis_args(objs: list[dict[str, Any]]) -> list[str]:
    (sts,) = by_kind(objs, "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = _container_env(objs, "StatefulSet")
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]


@pytest.fixture
def running(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> Iterator[tuple[Service, dict[str, str], RedisServer]]:
    env = _container_env(rendered, "Deployment")
    args = _redis_args(rendered)
    password = args[args.index("--requirepass") + 1]
    server = RedisServer(tmp_path, extra_args=["--requirepass", password])
    # The only change: the Service's DNS name exists in a cluster, not here.
    env["AVMON_REDIS_URL"] = re.sub(
        r"@[^/]+/", f"@127.0.0.1:{server.port}/", env["AVMON_REDIS_URL"]
    )
    svc = Service(tmp_path, **env)
    try:
        yield svc, env, server
    finally:
        svc.stop()
        server.stop()


def test_the_rendered_env_refuses_unauthenticated_api_calls(
    running: tuple[Service, dict[str, str], RedisServer],
) -> None:
    svc, env, server = running
    with httpx.Client(base_url=svc.base, timeout=10) as c:
        assert c.get("/readyz").status_code == 200  # it reached Redis with the password
        assert c.get("/api/v1/streams").status_code == 401
        assert c.post("/api/v1/streams", json={"name": "x", "url": "rtsp://h/x"}).status_code == 401
        auth = {"Authorization": f"Bearer {env['AVMON_API_TOKEN']}"}
        assert c.get("/api/v1/streams", headers=auth).status_code == 200
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=server.port).ping()  # and Redis itself refuses strangers
    assert env["AVMON_API_TOKEN"] not in svc.log.read_text()
