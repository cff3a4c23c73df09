"""Webhook delivery from the embedded (SQLite) event log against real sockets: a receiver
that answers garbage must not end delivery for good, and an ``open`` delivered after its
defect closed still reads ``open`` (the log holds the event as committed). The store
forgets nothing across a restart."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from service.events.delivery import Dispatcher
from service.events.event_log import Cursor
from service.events.model import DefectRecord
from service.events.sqlite_store import SqliteStore
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


def _dispatch(store: SqliteStore, url: str) -> Dispatcher:
    sender = Dispatcher(store, [url], secret=None, who="test")
    sender.start()
    return sender


def test_a_non_http_reply_does_not_end_delivery() -> None:
    rx = RawReceiver(garbage=2)
    store = SqliteStore(None, max_defects=100)
    sender = _dispatch(store, rx.url)
    store.put(_record("first"))
    store.put(_record("second"))
    assert wait_for(lambda: len(rx.bodies) == 2, 15)
    assert [b["defect"]["stream_name"] for b in rx.bodies] == ["first", "second"]
    sender.stop()


def test_an_open_delivered_after_the_close_still_reads_open() -> None:
    rx = RawReceiver(slow=1.0)
    store = SqliteStore(None, max_defects=100)
    sender = _dispatch(store, rx.url)
    store.put(_record("busy"))  # holds delivery for a second
    live = _record("late")
    store.put(live)
    live.end, live.ended_at = 3.0, time.time()  # the defect closes meanwhile
    store.put(live, kind="close")
    assert wait_for(lambda: len(rx.bodies) == 3, 15)
    late = [(b["kind"], b["defect"]["state"]) for b in rx.bodies[1:]]
    assert late == [("open", "open"), ("close", "closed")]
    sender.stop()


def test_the_embedded_store_forgets_nothing_across_a_restart(tmp_path: Path) -> None:
    """Registry, defects, evidence, the log and each receiver's cursor survive; event ids
    never repeat (a fresh in-memory database gets ids of its own)."""
    store = SqliteStore(str(tmp_path), max_defects=100)
    store.save_stream("s1", {"id": "s1", "name": "cam"})
    record = _record("cam")
    store.put(record, evidence=b"jpeg")
    (first,) = store.after(None, 10, 0.0)
    store.advance("rx", "me", Cursor(first.id, first.seq))
    store.close()
    again = SqliteStore(str(tmp_path), max_defects=100)
    assert again.streams() == [("s1", {"id": "s1", "name": "cam"})]
    (kept,) = again.query(open_=True)
    assert kept.id == record.id and kept.evidence and again.evidence(record.id) == b"jpeg"
    assert again.cursor("rx") == Cursor(first.id, first.seq)
    record.end, record.ended_at = 2.0, time.time()
    again.put(record, kind="close")
    (second,) = again.after(again.cursor("rx"), 10, 0.0)
    assert second.seq == first.seq + 1 and second.id != first.id
    assert json.loads(second.body)["kind"] == "close" and again.query(open_=True) == []
    memory = SqliteStore(None, max_defects=100)
    memory.put(_record("x"))
    assert memory.after(None, 1, 0.0)[0].id != first.id  # another database, other ids
