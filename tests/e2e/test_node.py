"""An avmon pod under a real kubelet (issue 12): kubelet v1.35.4 from its Go module,
Debian's containerd and runc, the image built from the Dockerfile without Docker. The
pod runs `avmon check` on a clip from a hostPath volume; its log, read through the API
server as `kubectl logs` does, holds the black run the clip carries."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ClipFactory
from tests.e2e.apiserver import ControlPlane
from tests.e2e.node import NODE, Node, image_archives

NS = "avmon-node"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (image build, containers, mounts)"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("containerd", "runc", "ctr", "buildah", "mmdebstrap")),
        reason="needs Debian's containerd, runc, buildah and mmdebstrap (scripts/setup --tests)",
    ),
]


@pytest.fixture(scope="module")
def node(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    started = time.monotonic()
    n = Node(cluster, tmp_path_factory.mktemp("node"), image_archives())
    print(f"node registered {time.monotonic() - started:.1f} s after start (images imported)")
    try:
        yield n
    finally:
        n.stop()
        Node.forget_logs(NS)


def test_avmon_pod_runs_under_a_real_kubelet(
    cluster: ControlPlane, node: Node, make_clip: ClipFactory, tmp_path: Path
) -> None:
    from kubernetes import client

    clip, _ = make_clip("black@1-3", duration=5.0, size="320x180")
    media = tmp_path / "media"
    media.mkdir(mode=0o755)
    shutil.copy(clip, media / "clip.ts")
    (media / "clip.ts").chmod(0o644)
    tmp_path.chmod(0o755)
    core = client.CoreV1Api(cluster.client())
    core.create_namespace({"metadata": {"name": NS}})
    # No controller-manager yet: the namespace's default service account by hand.
    core.create_namespaced_service_account(NS, {"metadata": {"name": "default"}})
    pod = {
        "metadata": {"name": "avmon-check"},
        "spec": {
            "nodeName": NODE,
            "hostNetwork": True,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "avmon",
                    "image": "localhost/avmon:e2e",
                    "imagePullPolicy": "Never",
                    "args": ["avmon", "check", "/media/clip.ts", "--json", "--detectors", "black"],
                    "volumeMounts": [{"name": "media", "mountPath": "/media", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "media", "hostPath": {"path": str(media)}}],
        },
    }
    created = time.monotonic()
    core.create_namespaced_pod(NS, pod)
    phase = None
    while time.monotonic() - created < 120:
        phase = core.read_namespaced_pod("avmon-check", NS).status.phase
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    print(f"pod {phase} {time.monotonic() - created:.1f} s after it was created")
    log = core.read_namespaced_pod_log("avmon-check", NS)
    assert phase == "Succeeded", log
    defects = json.loads(log.strip().splitlines()[-1])["defects"]
    assert [(d["type"], round(d["start"], 1), round(d["end"], 1)) for d in defects] == [
        ("black", 1.0, 3.0)
    ]
