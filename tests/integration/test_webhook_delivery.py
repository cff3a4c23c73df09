"""Webhook delivery against real sockets: a receiver that answers garbage once must not
end delivery for good, and an ``open`` delivered after its defect closed still reads
``open`` (records are snapshots, not the live object)."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from service.events.model import DefectRecord, FeedEvent
from service.events.webhooks import WebhookSender
from tests.integration.service_proc import wait_for


class RawReceiver:
    """A TCP server speaking just enough HTTP; the first ``garbage`` connections get a
    reply that is not HTTP at all, the first ``slow`` requests are answered late."""

    def __init__(self, garbage: int = 0, slow: float = 0.0) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.garbage, self.slow = garbage, slow
        self.bodies: list[dict[str, Any]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    h.split(b":")[1]
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            if self.garbage > 0:
                self.garbage -= 1
                conn.sendall(b"SSH-2.0-not-http\r\n\r\n")
                return
            if self.slow and not self.bodies:
                time.sleep(self.slow)
            self.bodies.append(json.loads(body))
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")


def _record(name: str) -> DefectRecord:
    return DefectRecord("s1", name, "black", "video", 1.0, "warning", {}, time.time())


def test_a_non_http_reply_does_not_end_delivery() -> None:
    rx = RawReceiver(garbage=2)
    results: list[str] = []
    sender = WebhookSender([rx.url], secret=None, on_result=results.append)
    sender.start()
    sender(FeedEvent("open", _record("first")))
    sender(FeedEvent("open", _record("second")))
    assert wait_for(lambda: len(rx.bodies) == 2, 15), results
    assert [b["defect"]["stream_name"] for b in rx.bodies] == ["first", "second"]
    sender.stop()


def test_an_open_delivered_after_the_close_still_reads_open() -> None:
    rx = RawReceiver(slow=1.0)
    sender = WebhookSender([rx.url], secret=None)
    sender.start()
    sender(FeedEvent("open", _record("busy")))  # holds the worker for a second
    live = _record("late")
    sender(FeedEvent("open", live))
    live.end, live.ended_at = 3.0, time.time()  # the defect closes meanwhile
    sender(FeedEvent("close", live))
    assert wait_for(lambda: len(rx.bodies) == 3, 15)
    late = [(b["kind"], b["defect"]["state"]) for b in rx.bodies[1:]]
    assert late == [("open", "open"), ("close", "closed")]
    sender.stop()
