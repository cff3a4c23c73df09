"""A real Kubernetes control plane for tests: etcd and kube-apiserver (v1.35.4, built from
their Go modules by scripts/tools into .tools/bin), throwaway PKI made with openssl. On
its own, on loopback ports of its own and with no node: objects such as pods exist in the
API, nothing runs them (tests/e2e/cluster.py adds the rest of a cluster, in a network
namespace). The admin authenticates with a static token (group system:masters).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.procs import Procs

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
ADMIN_TOKEN = "avmon-e2e-admin"  # a throwaway test cluster's credential
ISSUER = "https://kubernetes.default.svc.cluster.local"


def tool(name: str) -> Path:
    """Build (or find) a pinned binary through scripts/tools."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools"), name], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/tools {name} failed:\n{out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue_cert(folder: Path, name: str, subject: str, extensions: str = "") -> None:
    """``name``.key and ``name``.crt signed by the CA in ``folder``."""
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=folder)
    _openssl(
        "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=folder
    )  # fmt: skip
    extra = []
    if extensions:
        (folder / f"{name}.ext").write_text(extensions)
        extra = ["-extfile", f"{name}.ext"]
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", *extra, "-out", f"{name}.crt", cwd=folder,
    )  # fmt: skip


def make_pki(folder: Path, ips: tuple[str, ...] = ("127.0.0.1",)) -> None:
    """CA, an API server certificate for ``ips``, its client certificates towards kubelets
    and aggregated API servers (metrics-server), and the service-account key pair."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=folder)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-days", "2", "-subj", "/CN=avmon-e2e-ca",
        "-out", "ca.crt", cwd=folder,
    )  # fmt: skip
    issue_cert(
        folder,
        "server",
        "/CN=kube-apiserver",
        f"subjectAltName={','.join('IP:' + ip for ip in ips)},DNS:localhost,"
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local\n"
        "extendedKeyUsage=serverAuth\n",
    )
    # The API server's client certificate towards kubelets (logs, exec).
    issue_cert(folder, "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
    issue_cert(folder, "front-proxy-client", "/CN=front-proxy-client")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)
    (folder / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin,"system:masters"\n')


class ControlPlane:
    """etcd + kube-apiserver as child processes; ``stop()`` leaves nothing running.

    Alone (the default): loopback, free ports. In a cluster: ``procs`` runs them inside the
    cluster's network namespace, ``address`` is the node-facing address (pods reach it as
    the ``kubernetes`` Service, 10.96.0.1), and the aggregation layer is on for
    metrics-server."""

    def __init__(
        self, folder: Path, procs: Procs | None = None, address: str = "127.0.0.1"
    ) -> None:
        self.folder = folder
        self.pki = folder / "pki"
        self.procs = procs or Procs(folder)
        in_cluster = procs is not None
        make_pki(self.pki, (address, "127.0.0.1", "10.96.0.1"))
        etcd, apiserver = tool("etcd"), tool("kube-apiserver")
        if in_cluster:  # a namespace of its own: every port is free
            client, peer, self.port = 2379, 2380, 6443
        else:
            client, peer, self.port = _port(), _port(), _port()
        self.procs.start(
            "etcd",
            [
                str(etcd),
                f"--data-dir={folder / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--log-level=warn",
            ],
        )
        p = self.pki
        flags = [
            str(apiserver),
            f"--etcd-servers=http://127.0.0.1:{client}",
            f"--bind-address={address}",
            f"--advertise-address={address}",
            f"--secure-port={self.port}",
            f"--cert-dir={folder / 'certs'}",
            f"--tls-cert-file={p / 'server.crt'}",
            f"--tls-private-key-file={p / 'server.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--token-auth-file={p / 'tokens.csv'}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--api-audiences={ISSUER}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=false",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={p / 'kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'kubelet-client.key'}",
            "--profiling=false",
        ]
        if in_cluster:
            # The aggregation layer (metrics.k8s.io from metrics-server), reaching the
            # extension server at its endpoint rather than through a Service IP.
            flags += [
                f"--requestheader-client-ca-file={p / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
                "--enable-aggregator-routing=true",
            ]
        self.procs.start("apiserver", flags)
        self.url = f"https://{address}:{self.port}"
        self._wait_ready(120.0)

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.procs.check()
            req = urllib.request.Request(
                self.url + "/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            try:
                with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        raise RuntimeError(f"API server not ready in {timeout:g} s ({last}): {self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(f"--- {n}\n" + self.procs.tail(n) for n in ("etcd", "apiserver"))

    def kubeconfig(self) -> Path:
        """A kubeconfig for the admin (helm, kubectl)."""
        path = self.folder / "kubeconfig"
        if not path.exists():
            ca = self.pki / "ca.crt"
            path.write_text(
                "apiVersion: v1\nkind: Config\n"
                f"clusters:\n- name: e2e\n  cluster:\n    server: {self.url}\n"
                f"    certificate-authority: {ca}\n"
                f"users:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\n"
                "contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\n"
                "current-context: e2e\n"
            )
            path.chmod(0o600)
        return path

    def client(self, token: str = ADMIN_TOKEN) -> Any:
        """A kubernetes.client.ApiClient authenticating with ``token``."""
        from kubernetes import client

        conf = client.Configuration()
        conf.host = self.url
        conf.ssl_ca_cert = str(self.pki / "ca.crt")
        conf.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(conf)

    def stop(self) -> None:
        self.procs.stop()
        shutil.rmtree(self.folder / "etcd", ignore_errors=True)
