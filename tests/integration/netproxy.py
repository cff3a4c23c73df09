"""A TCP proxy between real processes that can cut one link both ways while keeping its
sockets open (a partition, not a reset): bytes stop flowing, connections stay
established, new connections are accepted and then hang, until ``heal()``."""

from __future__ import annotations

import select
import socket
import threading


class CutProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.server = socket.create_server((host, 0))
        self.port = self.server.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self._open.set()
        self.server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._link, args=(client,), daemon=True).start()

    def _link(self, client: socket.socket) -> None:
        self._open.wait()  # a connection made during a cut hangs until it heals
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        pair = {client: upstream, upstream: client}
        try:
            while not self._closed:
                if not self._open.is_set():
                    self._open.wait(0.05)  # cut: read nothing, send nothing
                    continue
                ready, _, _ = select.select(list(pair), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()
