"""Network faults between real processes, injected by a real Toxiproxy (Shopify's TCP
proxy for chaos testing, built from its Go module by ``scripts/tools toxiproxy``).

``cut()`` adds a ``timeout`` toxic with timeout 0 in both directions: bytes stop flowing
while every connection stays established, and new connections are accepted and then
hang -- a partition, not a reset -- until ``heal()`` removes the toxics."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.service_proc import free_port

ROOT = Path(__file__).resolve().parents[2]


def toxiproxy_binary() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools"), "toxiproxy"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


class CutProxy:
    """One link (this proxy's ``port`` -> ``target_port``) through its own Toxiproxy."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.api = f"http://127.0.0.1:{free_port()}"
        api_port = self.api.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [toxiproxy_binary(), "-host", "127.0.0.1", "-port", api_port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self._call("GET", "/version")
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise
                time.sleep(0.05)
        proxy = self._call(
            "POST",
            "/proxies",
            {"name": "link", "listen": "127.0.0.1:0", "upstream": f"{host}:{target_port}"},
        )
        self.port = int(proxy["listen"].rsplit(":", 1)[1])

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
        return json.loads(raw) if raw and raw[:1] in b"{[" else raw

    def cut(self) -> None:
        for stream in ("upstream", "downstream"):
            self._call(
                "POST",
                "/proxies/link/toxics",
                {
                    "name": f"cut-{stream}",
                    "type": "timeout",
                    "stream": stream,
                    "toxicity": 1.0,
                    "attributes": {"timeout": 0},
                },
            )

    def heal(self) -> None:
        for stream in ("upstream", "downstream"):
            self._call("DELETE", f"/proxies/link/toxics/cut-{stream}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
