"""The real node of the e2e cluster: Debian's containerd 1.6 with runc and the bridge CNI
plugin, and a kubelet v1.35.4 built from its Go module, registered with the API server,
all inside the cluster's network namespace.

Images come from archives (`scripts/image`): containerd cannot pull from Docker Hub here,
the pod sandbox included. Settings this sandbox forces: containerd's
``restrict_oom_score_adj`` (negative oom_score_adj is refused), the kubelet's
``failCgroupV1: false`` and the cgroupfs driver. ``stop()`` leaves nothing behind: the
kubelet does not stop the containers it started, and it writes /var/log/pods and
/var/log/containers whatever its flags say.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.apiserver import ROOT, ControlPlane, issue_cert, tool
from tests.e2e.procs import Procs

NODE = "e2e-node"
POD_CIDR = "10.244.0.0/24"
KUBELET_PORT = 10250


class Node:
    def __init__(
        self, cp: ControlPlane, procs: Procs, folder: Path, ip: str, dns: str, images: list[Path]
    ) -> None:
        self.cp, self.procs, self.folder, self.ip = cp, procs, folder, ip
        folder.mkdir(parents=True, exist_ok=True)
        self.sock = folder / "containerd.sock"
        cni = folder / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        # One bridge for the node's pods; the pod range is routed from the host to the
        # namespace, so tests reach pods (and Service IPs) directly.
        conflist = {
            "cniVersion": "1.0.0",
            "name": "avmon-e2e",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(cni / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (cni / "net.d" / "10-avmon.conflist").write_text(json.dumps(conflist, indent=1))
        (folder / "containerd.toml").write_text(
            "version = 2\n"
            f'root = "{folder}/containerd/root"\nstate = "{folder}/containerd/state"\n'
            f'[grpc]\n  address = "{self.sock}"\n'
            '[plugins."io.containerd.grpc.v1.cri"]\n'
            '  sandbox_image = "localhost/avmon-pause:e2e"\n'
            "  restrict_oom_score_adj = true\n"
            '  [plugins."io.containerd.grpc.v1.cri".containerd]\n'
            '    snapshotter = "overlayfs"\n'
            '  [plugins."io.containerd.grpc.v1.cri".cni]\n'
            '    bin_dir = "/usr/lib/cni"\n'
            f'    conf_dir = "{cni / "net.d"}"\n'
        )
        procs.start("containerd", ["containerd", "--config", str(folder / "containerd.toml")])
        self._wait(self.sock.exists, 30, "containerd socket")
        for archive in images:
            self.ctr("images", "import", "--snapshotter", "overlayfs", str(archive))
        self._kubelet(tool("kubelet"), dns)

    # ------------------------------------------------------------------ set-up
    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.procs.check()
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

    def _kubelet(self, kubelet: Path, dns: str) -> None:
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
            # Callers present a certificate of our CA (the API server, for logs) or a token
            # the API server vouches for (metrics-server); the API server authorizes them.
            "authentication:\n  anonymous: {enabled: false}\n  webhook: {enabled: true}\n"
            f"  x509: {{clientCAFile: {pki / 'ca.crt'}}}\n"
            "authorization: {mode: Webhook}\n"
            f"address: {self.ip}\nport: {KUBELET_PORT}\nreadOnlyPort: 0\nhealthzPort: 0\n"
            f"clusterDNS: [{dns}]\nclusterDomain: cluster.local\n"
            f"resolvConf: {self.folder / 'resolv.conf'}\n"
            "cgroupsPerQOS: false\nenforceNodeAllocatable: []\nfailSwapOn: false\n"
            "evictionHard: {}\nimageGCHighThresholdPercent: 100\nimageGCLowThresholdPercent: 99\n"
            # Pod status and resource metrics every few seconds (the HPA reads the latter).
            "nodeStatusUpdateFrequency: 4s\nsyncFrequency: 10s\n"
        )
        (self.folder / "resolv.conf").write_text(f"nameserver {dns}\n")
        self.procs.start(
            "kubelet",
            [
                str(kubelet),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.folder / 'kubelet'}",
                f"--hostname-override={NODE}",
                f"--node-ip={self.ip}",
                f"--cert-dir={self.folder / 'kubelet-pki'}",
            ],
        )
        core = client.CoreV1Api(self.cp.client())

        def ready() -> bool:
            """Registered with its addresses (the API server reaches the kubelet through
            them) and Ready (the CNI network is up)."""
            try:
                node = core.read_node(NODE)
            except client.exceptions.ApiException:
                return False
            conditions = {c.type: c.status for c in (node.status.conditions or [])}
            return bool(node.status.addresses) and conditions.get("Ready") == "True"

        self._wait(ready, 120, "the kubelet's Node")

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        teardown(self.procs, self.folder)

    @staticmethod
    def forget_logs() -> None:
        """The kubelet's per-pod log files, written outside any folder it is given (only
        this cluster's node writes them on this machine)."""
        for path in Path("/var/log/pods").glob("*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in Path("/var/log/containers").glob("*.log"):
            path.unlink(missing_ok=True)


def _cgroup_pids(root: Path) -> set[int]:
    """The processes in the cgroups under ``root``. Containers exit while it walks and
    runc removes their cgroups: a directory or file gone meanwhile is skipped (a glob
    over the tree raised FileNotFoundError in a CI run's teardown)."""
    pids: set[int] = set()
    for folder, _, files in os.walk(root):  # errors (a folder gone) are ignored
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in Path(folder, "cgroup.procs").read_text().split())
    return pids


def teardown(procs: Procs, folder: Path) -> None:
    """The kubelet first (it would restart what we kill), then every container process
    (found by the cgroups runc made, not one `ctr` call per task: a ct run leaves dozens),
    their shims, containerd, the mounts under ``folder``, and the state it wrote."""
    procs.stop(only="kubelet")
    sock = str(folder / "containerd.sock")
    for _ in range(3):  # a dying process's children may appear once
        pids = _cgroup_pids(Path("/sys/fs/cgroup/pids/k8s.io"))
        for pid in _shims(sock):
            pids.add(pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            break
        time.sleep(0.3)
    procs.stop(only="containerd")
    # Mounts the kubelet and the sandboxes made under our folder (volumes, shm, rootfs).
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(folder))
    ]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    for sub in ("containerd", "kubelet", "cni/ipam"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    # runc's and the shims' run directories (no other containerd runs on a test machine).
    shutil.rmtree("/run/containerd/runc/k8s.io", ignore_errors=True)
    shutil.rmtree("/run/containerd/s", ignore_errors=True)  # the killed shims' sockets
    for empty in ("runc", "fifo", "s", ""):
        with contextlib.suppress(OSError):
            Path("/run/containerd", empty).rmdir()
    # Written outside any folder given: libcni's cache and lock, the kubelet's
    # device-plugin socket and serving certificate.
    for cached in Path("/var/lib/cni/results").glob("*"):
        if cached.name.startswith(("avmon-e2e-", "cni-loopback-")):
            cached.unlink(missing_ok=True)
    Path("/var/lib/kubelet/device-plugins/kubelet.sock").unlink(missing_ok=True)
    # Its self-signed serving certificate, written here despite --cert-dir.
    shutil.rmtree("/var/lib/kubelet/pki", ignore_errors=True)
    Path("/etc/cni/net.d/cni.lock").unlink(missing_ok=True)
    for empty in (
        "/var/lib/cni/results", "/var/lib/cni", "/var/lib/kubelet/device-plugins",
        "/var/lib/kubelet", "/etc/cni/net.d", "/etc/cni",
    ):  # fmt: skip
        with contextlib.suppress(OSError):
            Path(empty).rmdir()


def _shims(sock: str) -> list[int]:
    """containerd-shim processes serving our containerd (they outlive it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in argv:
            found.append(int(proc.name))
    return found


def image_archives() -> list[Path]:
    paths = []
    for args in (["--pause"], ["--redis"], ["--archive", "e2e"]):
        out = subprocess.run(
            ["bash", str(ROOT / "scripts" / "image"), *args],
            capture_output=True,
            text=True,
            check=True,
        )
        paths.append(Path(out.stdout.strip().splitlines()[-1]))
    return paths
