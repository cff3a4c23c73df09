"""A whole Kubernetes (v1.35.4) on this machine, inside a network namespace of its own:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, one real node (containerd,
runc, bridge CNI, kubelet), kube-proxy (iptables), a small DNS (dnsmasq fed from the
Services) and metrics-server (so an HPA on CPU works). Every binary is built from its Go
module by scripts/tools; images come from scripts/image.

    python -m tests.e2e.cluster up|down|status     (what scripts/cluster runs)

The namespace is joined to the host by a veth pair: the host is 172.31.250.1, the node
(and the API server) 172.31.250.2, and the pod and Service ranges are routed from the host
to the node, so a test (or a user's curl) reaches pods and Service IPs directly, and pods
reach servers the host runs on 172.31.250.1. ``down`` leaves nothing behind: processes,
containers, mounts, the namespaces (the cluster's and the pods'), /var/log/pods.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.e2e.apiserver import ROOT, ControlPlane, tool
from tests.e2e.node import NODE, POD_CIDR, Node, image_archives, teardown
from tests.e2e.procs import Procs

NETNS = "avmon-e2e"
HOST_LINK = "avm-e2e"
HOST_IP, NODE_IP = "172.31.250.1", "172.31.250.2"
SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_FOLDER = ROOT / ".tools" / "cluster"
BINARIES = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
    "kube-proxy", "kubectl", "metrics-server", "helm",
)  # fmt: skip


def sh(*argv: str) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")


class Cluster:
    def __init__(self, folder: Path = DEFAULT_FOLDER, detach: bool = False) -> None:
        self.folder = folder
        self.procs = Procs(folder, NETNS, detach)
        self.cp: ControlPlane | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    # ------------------------------------------------------------------ up
    def up(self) -> Cluster:
        if os.geteuid() != 0:
            raise RuntimeError("a cluster needs root (network namespace, containers, mounts)")
        if any(self.procs.alive().values()) or Path(f"/run/netns/{NETNS}").exists():
            raise RuntimeError(f"a cluster is already up ({self.folder}); run down first")
        for name in BINARIES:
            tool(name)
        started = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        # The images build (buildah, tens of seconds after a code change) while the
        # control plane starts: the node needs them only to import.
        builder = ThreadPoolExecutor(1, thread_name_prefix="images")
        building = builder.submit(image_archives)
        try:
            self._network()
            self.cp = ControlPlane(self.folder, self.procs, NODE_IP)
            admin = self.cp.kubeconfig()
            auth = [f"--kubeconfig={admin}", f"--authentication-kubeconfig={admin}",
                    f"--authorization-kubeconfig={admin}"]  # fmt: skip
            pki = self.cp.pki
            self.procs.start(
                "controller-manager",
                [
                    str(tool("kube-controller-manager")),
                    *auth,
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    # The HPA looks every 5 s (default 15 s): tests wait less; what it
                    # decides is unchanged.
                    "--horizontal-pod-autoscaler-sync-period=5s",
                ],
            )
            self.procs.start(
                "scheduler",
                [str(tool("kube-scheduler")), *auth, "--leader-elect=false",
                 "--bind-address=127.0.0.1"],
            )  # fmt: skip
            self._dns()
            images = building.result()
            node = Node(self.cp, self.procs, self.folder / "node", NODE_IP, NODE_IP, images)
            del node  # down() tears the node down from its folder alone
            self._kube_proxy(admin)
            self._metrics_server(auth)
            self._wait_usable()
        except BaseException:
            building.cancel()
            builder.shutdown(wait=True)
            self.down()
            raise
        builder.shutdown()
        (self.folder / "up_seconds").write_text(f"{time.monotonic() - started:.1f}\n")
        return self

    def _network(self) -> None:
        sh("ip", "netns", "add", NETNS)
        sh("ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name", "eth0",
           "netns", NETNS)  # fmt: skip
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_LINK)
        sh("ip", "link", "set", HOST_LINK, "up")
        ns = self.procs.run
        ns("ip", "link", "set", "lo", "up")
        ns("ip", "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        ns("ip", "link", "set", "eth0", "up")
        ns("ip", "route", "add", "default", "via", HOST_IP)
        ns("sysctl", "-qw", "net.ipv4.ip_forward=1")
        # Pod to Service to a pod on the same bridge: replies must cross iptables too.
        with contextlib.suppress(RuntimeError):
            ns("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        for cidr in (POD_CIDR, SERVICE_CIDR):
            sh("ip", "route", "add", cidr, "via", NODE_IP)

    def _dns(self) -> None:
        """dnsmasq answering <service>.<namespace>.svc.cluster.local from a hosts file a
        feeder rewrites from the Services (and SIGHUPs dnsmasq on each change)."""
        hosts = self.folder / "dns.hosts"
        hosts.write_text("")
        self.procs.start(
            "dnsmasq",
            ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--user=root",
             f"--listen-address={NODE_IP}", "--bind-interfaces", f"--addn-hosts={hosts}",
             "--local=/cluster.local/", "--domain-needed", "--cache-size=0", "--pid-file=",
             "--log-facility=-"],
        )  # fmt: skip
        self.procs.start(
            "dns-feeder",
            [sys.executable, "-m", "tests.e2e.cluster", "dns-feeder", str(self.folder)],
            cwd=ROOT,
        )

    def _kube_proxy(self, admin: Path) -> None:
        config = self.folder / "kube-proxy.yaml"
        config.write_text(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
            f"clientConnection: {{kubeconfig: {admin}}}\n"
            f"mode: iptables\nclusterCIDR: {POD_CIDR}\nhostnameOverride: {NODE}\n"
            # conntrack sizes are host-wide sysctls: leave them alone.
            "conntrack: {maxPerCore: 0}\n"
            "metricsBindAddress: 127.0.0.1:10249\nhealthzBindAddress: 127.0.0.1:10256\n"
        )
        self.procs.start("kube-proxy", [str(tool("kube-proxy")), f"--config={config}"])

    def _metrics_server(self, auth: list[str]) -> None:
        from kubernetes import client

        self.procs.start(
            "metrics-server",
            [
                str(tool("metrics-server")),
                *auth,
                f"--bind-address={NODE_IP}",
                "--secure-port=4443",
                f"--cert-dir={self.folder / 'metrics-server'}",
                # The kubelet's serving certificate is self-signed (as on kind and minikube).
                "--kubelet-insecure-tls",
                "--kubelet-preferred-address-types=InternalIP",
                "--metric-resolution=10s",
                "--kubelet-request-timeout=5s",
            ],
        )
        assert self.cp is not None
        api = self.cp.client()
        core = client.CoreV1Api(api)
        core.create_namespaced_service(
            "kube-system",
            {
                "metadata": {"name": "metrics-server"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 4443}]},
            },
        )
        core.create_namespaced_endpoints(
            "kube-system",
            {
                "metadata": {"name": "metrics-server"},
                "subsets": [
                    {
                        "addresses": [{"ip": NODE_IP}],
                        "ports": [{"name": "https", "port": 4443}],
                    }
                ],
            },
        )
        client.ApiregistrationV1Api(api).create_api_service(
            {
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {"name": "metrics-server", "namespace": "kube-system",
                                "port": 443},
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            }
        )  # fmt: skip

    def _wait_usable(self, timeout: float = 180.0) -> None:
        """The default namespace's service account exists (pods can be created), and
        metrics-server answers for the node (an HPA can read CPU)."""
        from kubernetes import client

        assert self.cp is not None
        api = self.cp.client()
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        deadline = time.monotonic() + timeout
        missing = "the default service account"
        while time.monotonic() < deadline:
            self.procs.check()
            try:
                core.read_namespaced_service_account("default", "default")
                missing = "node metrics from metrics-server"
                custom.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", NODE)
                return
            except client.exceptions.ApiException:
                time.sleep(1)
        raise RuntimeError(f"cluster not usable in {timeout:g} s: no {missing}")

    # ------------------------------------------------------------------ down / status
    def down(self) -> None:
        started = time.monotonic()
        failed: Exception | None = None
        try:
            teardown(self.procs, self.folder / "node")
        except Exception as exc:  # the rest must still go (a CI run left all of it behind)
            failed = exc
        node_s = time.monotonic() - started
        self.procs.stop()
        # Pod network namespaces containerd made and could not remove once killed.
        for netns in Path("/run/netns").glob("cni-*"):
            subprocess.run(["ip", "netns", "delete", netns.name], capture_output=True, check=False)
        if Path(f"/run/netns/{NETNS}").exists():
            sh("ip", "netns", "delete", NETNS)  # takes the veth pair and its routes along
        for _ in range(50):  # ... a moment later
            if not _host_link():
                break
            time.sleep(0.1)
        Node.forget_logs()
        # The cgroups runc made for containerd's k8s.io namespace (empty once all is down).
        for top in Path("/sys/fs/cgroup").glob("*/k8s.io"):
            for cgroup in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    cgroup.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
        for sub in ("etcd", "metrics-server"):
            subprocess.run(["rm", "-rf", str(self.folder / sub)], check=False)
        print(f"cluster down in {time.monotonic() - started:.1f} s (node {node_s:.1f} s)")
        if failed is not None:
            raise failed

    def leftovers(self) -> list[str]:
        """What a cluster could leave on the machine that is still there (after down)."""
        found = [f"process {n}" for n, alive in self.procs.alive().items() if alive]
        found += [str(p) for p in Path("/run/netns").glob("*") if p.name == NETNS
                  or p.name.startswith("cni-")]  # fmt: skip
        found += [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.folder))]  # fmt: skip
        for path in (
            "/run/containerd", "/var/lib/kubelet", "/var/lib/cni", "/etc/cni",
            *map(str, Path("/sys/fs/cgroup").glob("*/k8s.io")),
            *map(str, Path("/var/log/pods").glob("*")),
            *map(str, Path("/var/log/containers").glob("*")),
        ):  # fmt: skip
            if Path(path).exists():
                found.append(path)
        if _host_link():
            found.append(f"link {HOST_LINK}")
        return found

    def status(self) -> str:
        alive = self.procs.alive()
        if not alive:
            return "down"
        lines = [f"{name}: {'running' if ok else 'EXITED'}" for name, ok in alive.items()]
        out = subprocess.run(
            [str(tool("kubectl")), "get", "nodes,pods", "-A", "-o", "wide"],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            capture_output=True,
            text=True,
            check=False,
        )
        return "\n".join([*lines, "", out.stdout + out.stderr])

    def client(self) -> Any:
        assert self.cp is not None
        return self.cp.client()


def _host_link() -> bool:
    """The host end of the veth pair still exists."""
    out = subprocess.run(["ip", "link", "show", HOST_LINK], capture_output=True, check=False)
    return out.returncode == 0


# ---------------------------------------------------------------------- the DNS feeder
def feed_dns(folder: Path) -> None:
    """Rewrite the hosts file from the Services every half second; HUP dnsmasq on change."""
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(str(folder / "kubeconfig")))
    hosts, last = folder / "dns.hosts", ""
    pid = dict(Procs(folder).recorded())["dnsmasq"]
    while True:
        with contextlib.suppress(Exception):
            services = core.list_service_for_all_namespaces().items
            lines = sorted(
                f"{s.spec.cluster_ip} {s.metadata.name}.{s.metadata.namespace}.svc.cluster.local"
                for s in services
                if s.spec.cluster_ip and s.spec.cluster_ip != "None"
            )
            text = "\n".join(lines) + "\n"
            if text != last:
                hosts.write_text(text)
                os.kill(pid, signal.SIGHUP)
                last = text
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "dns-feeder"])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args(argv)
    if args.command == "dns-feeder":
        feed_dns(args.folder)
        return 0
    cluster = Cluster(args.folder, detach=True)
    if args.command == "down":
        cluster.down()
        print("cluster down")
    elif args.command == "status":
        print(cluster.status())
    else:
        cluster.up()
        seconds = (args.folder / "up_seconds").read_text().strip()
        print(UP_MESSAGE.format(seconds=seconds, kubeconfig=cluster.kubeconfig, root=ROOT))
    return 0


UP_MESSAGE = """cluster up in {seconds} s (one node; the API server is https://172.31.250.2:6443)

  export KUBECONFIG={kubeconfig}
  alias kubectl={root}/.tools/bin/kubectl helm={root}/.tools/bin/helm
  helm install avmon {root}/deploy/helm/avmon -n avmon --create-namespace \\
    -f {root}/deploy/local-cluster-values.yaml --wait
  helm test avmon -n avmon --logs
  kubectl -n avmon get pods,svc,hpa

The avmon Service is reachable from this machine at its ClusterIP (port 8080); its API
token: kubectl -n avmon get secret avmon -o jsonpath='{{.data.api-token}}' | base64 -d
Stop with: scripts/cluster down
"""

if __name__ == "__main__":
    sys.exit(main())
