"""A real node for the e2e control plane: Debian's containerd 1.6 with runc, and a kubelet
v1.35.4 built from its Go module, registered with the API server.

Pods use the host's network for now (no CNI bridge or kube-proxy yet). Images come from
archives (`scripts/image`): containerd cannot pull from Docker Hub here, the pod sandbox
included. Settings this sandbox forces: containerd's ``restrict_oom_score_adj`` (negative
oom_score_adj is refused), the kubelet's ``failCgroupV1: false`` and the cgroupfs driver.
``stop()`` leaves nothing behind: the kubelet does not stop the containers it started,
and it writes /var/log/pods and /var/log/containers whatever its flags say.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.apiserver import ROOT, ControlPlane, issue_cert, tool

NODE = "e2e-node"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, cp: ControlPlane, folder: Path, images: list[Path]) -> None:
        self.cp, self.folder = cp, folder
        # A node's IP may not be loopback: the host's own address (source of its route out).
        self.ip = host_ip()
        folder.mkdir(parents=True, exist_ok=True)
        self.sock = folder / "containerd.sock"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []
        (folder / "containerd.toml").write_text(
            "version = 2\n"
            f'root = "{folder}/containerd/root"\nstate = "{folder}/containerd/state"\n'
            f'[grpc]\n  address = "{self.sock}"\n'
            '[plugins."io.containerd.grpc.v1.cri"]\n'
            '  sandbox_image = "localhost/avmon-pause:e2e"\n'
            "  restrict_oom_score_adj = true\n"
            '  [plugins."io.containerd.grpc.v1.cri".containerd]\n'
            '    snapshotter = "native"\n'
        )
        try:
            self._start("containerd", ["containerd", "--config", str(folder / "containerd.toml")])
            self._wait(self.sock.exists, 30, "containerd socket")
            for archive in images:
                self.ctr("images", "import", "--snapshotter", "native", str(archive))
            self._kubelet(tool("kubelet"))
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------------ set-up
    def _start(self, name: str, argv: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("w")
        self.logs.append(log)
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{what} not ready in {timeout:g} s; see {self.folder}")

    def ctr(self, *args: str) -> str:
        out = subprocess.run(
            ["ctr", "--address", str(self.sock), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def _kubelet(self, kubelet: Path) -> None:
        from kubernetes import client

        pki = self.cp.pki
        issue_cert(pki, "node", f"/O=system:nodes/CN=system:node:{NODE}")
        kubeconfig = self.folder / "kubelet.kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: e2e\n  cluster:\n    server: {self.cp.url}\n"
            f"    certificate-authority: {pki / 'ca.crt'}\n"
            f"users:\n- name: node\n  user:\n    client-certificate: {pki / 'node.crt'}\n"
            f"    client-key: {pki / 'node.key'}\n"
            "contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: node\n"
            "current-context: e2e\n"
        )
        # RBAC only (no Node authorizer here): nodes get the node role.
        rbac = client.RbacAuthorizationV1Api(self.cp.client())
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": "e2e-nodes"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "system:node"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                              "name": "system:nodes"}],
            }
        )  # fmt: skip
        config = self.folder / "kubelet.yaml"
        config.write_text(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
            "cgroupDriver: cgroupfs\nfailCgroupV1: false\n"
            f"containerRuntimeEndpoint: unix://{self.sock}\n"
            # Callers (the API server, for logs) present a certificate of our CA and
            # are authorized by the API server (RBAC), as on a real node.
            "authentication:\n  anonymous: {enabled: false}\n  webhook: {enabled: false}\n"
            f"  x509: {{clientCAFile: {pki / 'ca.crt'}}}\n"
            "authorization: {mode: Webhook}\n"
            f"address: {self.ip}\nport: {_port()}\nreadOnlyPort: 0\nhealthzPort: 0\n"
            "cgroupsPerQOS: false\nenforceNodeAllocatable: []\nfailSwapOn: false\n"
            "evictionHard: {}\nimageGCHighThresholdPercent: 100\nimageGCLowThresholdPercent: 99\n"
        )
        self._start(
            "kubelet",
            [
                str(kubelet),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.folder / 'kubelet'}",
                f"--hostname-override={NODE}",
                f"--node-ip={self.ip}",
            ],
        )
        core = client.CoreV1Api(self.cp.client())

        def registered() -> bool:
            """The Node exists with its addresses (the API server reaches the kubelet
            through them for logs)."""
            try:
                node = core.read_node(NODE)
            except client.exceptions.ApiException:
                return False
            return bool(node.status and node.status.addresses)

        self._wait(registered, 90, "the kubelet's Node")

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        kubelet_first = list(reversed(self.procs))
        if len(self.procs) == 2:
            kubelet_first[0].terminate()
            kubelet_first[0].wait(30)
            kubelet_first = kubelet_first[1:]
        # The kubelet leaves its containers running: kill every task, then containerd.
        try:
            tasks = self.ctr("tasks", "ls", "-q").split()
            for task in tasks:
                subprocess.run(
                    ["ctr", "--address", str(self.sock), "-n", "k8s.io", "tasks", "kill",
                     "-s", "SIGKILL", task], capture_output=True, check=False,
                )  # fmt: skip
            time.sleep(1)
            for task in tasks:
                self.ctr("tasks", "rm", "-f", task)
            for container in self.ctr("containers", "ls", "-q").split():
                self.ctr("containers", "rm", container)
        except subprocess.CalledProcessError:
            pass
        for proc in kubelet_first:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()
        # Mounts the kubelet and the sandboxes made under our folder (volumes, shm).
        mounts = [
            line.split()[1]
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.folder))
        ]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.folder / "containerd", ignore_errors=True)
        shutil.rmtree(self.folder / "kubelet", ignore_errors=True)

    @staticmethod
    def forget_logs(namespace: str) -> None:
        """The kubelet's per-pod log files, written outside any folder it is given."""
        for path in Path("/var/log/pods").glob(f"{namespace}_*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in Path("/var/log/containers").glob(f"*_{namespace}_*"):
            path.unlink(missing_ok=True)


def host_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: only the route is looked up
        return str(s.getsockname()[0])


def image_archives() -> list[Path]:
    paths = []
    for args in (["--pause"], ["--archive", "e2e"]):
        out = subprocess.run(
            ["bash", str(ROOT / "scripts" / "image"), *args],
            capture_output=True,
            text=True,
            check=True,
        )
        paths.append(Path(out.stdout.strip().splitlines()[-1]))
    return paths
