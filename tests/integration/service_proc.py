"""Real processes for integration tests: `avmon serve` and a live UDP sender."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`avmon serve` in a child process on a free loopback port."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        # Test sources live on loopback, which the default policy refuses: opt back in
        # (a test of the policy itself passes its own lists).
        full_env = {"AVMON_SOURCE_ALLOWLIST": "127.0.0.0/8", **os.environ, **env}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"avmon serve did not become ready: {self.log.read_text()}")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class EventFeed:
    """Reads the SSE feed in a thread; keeps (wall time, kind, defect) tuples."""

    def __init__(self, base: str) -> None:
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self._resp = urllib.request.urlopen(base + "/api/v1/events", timeout=120)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self._resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    assert line == "event: defect", line
                elif line.startswith("data: "):
                    msg = json.loads(line[6:])
                    self.events.append((time.time(), msg["kind"], msg["defect"]))
        except (OSError, ValueError, AttributeError):  # closed under the reader
            return

    def close(self) -> None:
        self._resp.close()


class UdpSender:
    """A live MPEG-TS source: a child process sending a clip over UDP in real time.

    ``started`` is the wall clock just before its first packet: the child's own start-up
    (importing PyAV takes seconds on a loaded machine) is not the service's latency."""

    def __init__(self, clip: Path, port: int, skip_s: float = 0.0) -> None:
        code = (
            "import sys, threading, time; from service.demo import send_udp; "
            "print(time.time(), flush=True); "
            "send_udp(sys.argv[1], sys.argv[2], threading.Event(), skip_s=float(sys.argv[3]))"
        )
        url = f"udp://127.0.0.1:{port}?pkt_size=1316"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(clip), url, str(skip_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.started = float(self.proc.stdout.readline())

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _verify(secret: str, body: bytes, headers: dict[str, str]) -> Any:
    import base64

    from standardwebhooks import Webhook

    hook = Webhook("whsec_" + base64.b64encode(secret.encode()).decode())
    try:
        return (headers["webhook-id"], hook.verify(body, headers))
    except Exception as exc:  # kept, raised by ``verified``
        return exc


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


class Hooks:
    """A webhook receiver keeping every raw body and its headers (in arrival order).

    ``down()`` closes its port (connections refused), ``up()`` opens the same port again;
    ``garbage = True`` answers every request with bytes that are not HTTP."""

    def __init__(self, secret: str | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        # With a secret, each delivery is verified when it arrives, as a receiver does
        # (the library refuses timestamps more than 5 minutes old, so not later).
        self.secret = secret
        self.checked: list[tuple[str, dict[str, Any]] | Exception] = []
        self.garbage = False
        self.port = 0
        self.up()
        self.url = f"http://{host}:{self.port}/hook"

    def up(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.garbage:
                    self.wfile.write(b"SSH-2.0-not-http\r\n\r\n")
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                if outer.secret is not None:
                    outer.checked.append(_verify(outer.secret, body, headers))
                outer.headers.append(headers)
                outer.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b) for b in list(self.bodies)]

    def verified(self, secret: str) -> list[tuple[str, dict[str, Any]]]:
        """(webhook-id, event) of every delivery, each checked as a receiver would, with
        the ``standardwebhooks`` library (raises on a bad or missing signature)."""
        if secret == self.secret:
            results = list(self.checked)
        else:
            pairs = list(zip(list(self.headers), list(self.bodies), strict=False))
            results = [_verify(secret, b, h) for h, b in pairs]
        for r in results:
            if isinstance(r, Exception):
                raise r
        return [r for r in results if not isinstance(r, Exception)]

    def close(self) -> None:
        self.down()
