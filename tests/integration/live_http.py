"""A live MPEG-TS feed over HTTP that any number of readers can join at any time, the way
udpxy-style relays and encoders' HTTP outputs serve one live programme to many clients.

A real sender process (``UdpSender``) plays a clip over UDP in real time to this relay,
which fans every datagram out to each connected HTTP client from where it joins. Cluster
tests need it: two members (an old owner cut off from Redis and its successor) may read
the same live source at once, which one unicast UDP port cannot give them.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.service_proc import UdpSender

CLIENT_BACKLOG = 2000  # datagrams (~2.6 MB): a reader that falls further behind is cut


class LiveHttpSource:
    def __init__(self, clip: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self._udp.settimeout(0.5)
        self._clients: list[queue.Queue[bytes | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection does

            def do_GET(self) -> None:
                q: queue.Queue[bytes | None] = queue.Queue(CLIENT_BACKLOG)
                with outer._lock:
                    outer._clients.append(q)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp2t")
                    self.end_headers()
                    while (chunk := q.get()) is not None:
                        self.wfile.write(chunk)
                except OSError:
                    pass  # the reader went away
                finally:
                    with outer._lock:
                        outer._clients.remove(q)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self.url = f"http://{host}:{self._http.server_address[1]}/live.ts"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        threading.Thread(target=self._relay, daemon=True).start()
        self.sender = UdpSender(clip, self._udp.getsockname()[1])
        self.started = self.sender.started  # wall clock of the clip's first packet

    def _relay(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._udp.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                clients = list(self._clients)
            for q in clients:
                try:
                    q.put_nowait(data)
                except queue.Full:  # hopelessly behind: end its connection
                    with self._lock:
                        if q in self._clients:
                            self._clients.remove(q)
                    with contextlib.suppress(queue.Empty):
                        q.get_nowait()
                    q.put_nowait(None)

    def close(self) -> None:
        self._stop.set()
        self.sender.kill()
        with self._lock:
            for q in self._clients:
                q.put(None)
        self._http.shutdown()
        self._udp.close()
