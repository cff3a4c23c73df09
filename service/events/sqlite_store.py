"""Embedded mode's store: the stream registry, defects, evidence frames and the event log
in one SQLite database (WAL), so an embedded service restarted with the same
``AVMON_DATA_DIR`` forgets nothing: its streams run again, their open defects are
continued (or closed) by the new runners, and webhooks resume from each receiver's
cursor. Without a data directory the same schema lives in memory.

Each open/close is one transaction that writes the record *and* appends the event, so
the log holds exactly what was committed (the Redis adapter does the same in Lua).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from service.events.event_log import Cursor, LoggedEvent
from service.events.model import DefectRecord
from service.observability import metrics

MAX_EVIDENCE = 500  # JPEGs kept (a few tens of KB each)
EVENT_LOG_MAX = 50_000  # like the Redis log; older ones also go after the retention
TRIM_EVERY = 100  # commits between trims

# Migrations by schema version (PRAGMA user_version); never edit one that has shipped.
MIGRATIONS = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE streams (id TEXT PRIMARY KEY, created REAL NOT NULL, doc TEXT NOT NULL);
    CREATE TABLE defects (
        id TEXT PRIMARY KEY,
        stream_id TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        open INTEGER NOT NULL,
        doc TEXT NOT NULL,
        evidence BLOB
    );
    CREATE INDEX defects_by_stream ON defects (stream_id, started_at);
    CREATE INDEX defects_by_time ON defects (started_at);
    CREATE INDEX defects_open ON defects (open) WHERE open = 1;
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        committed_at REAL NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE cursors (receiver TEXT PRIMARY KEY, entry TEXT NOT NULL, seq INTEGER NOT NULL);
    """,
)


class SqliteStore:
    def __init__(
        self, data_dir: str | None, max_defects: int, retention_s: float = 86_400.0
    ) -> None:
        path = ":memory:"
        if data_dir:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            path = str(Path(data_dir) / "avmon.sqlite3")
        # One connection, serialised by a lock: commits are rare (defects), reads small.
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.path = path
        self.max_defects = max_defects
        self.retention_s = retention_s
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._commits = 0
        if data_dir:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        # Event ids must never repeat for a receiver: a database in memory starts its
        # numbering again at every start, so every id carries the database's own token.
        self.token = self._meta("token", secrets.token_hex(4))

    def _migrate(self) -> None:
        with self._lock:
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            for n, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self.db.executescript(f"BEGIN; {script}; PRAGMA user_version = {n}; COMMIT;")

    def _meta(self, key: str, default: str) -> str:
        with self._lock:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, default))
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # ------------------------------------------------------------------ registry
    def save_stream(self, stream_id: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO streams VALUES (?, ?, ?)",
                (stream_id, time.time(), json.dumps(doc)),
            )

    def delete_stream(self, stream_id: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))

    def streams(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self.db.execute("SELECT id, doc FROM streams ORDER BY created").fetchall()
        return [(sid, json.loads(doc)) for sid, doc in rows]

    # ------------------------------------------------------------------ defects
    def put(self, record: DefectRecord, evidence: bytes | None = None, kind: str = "open") -> bool:
        if evidence is not None:
            record.evidence = True
        doc = json.dumps(record.stored_json())
        event = json.dumps({"kind": kind, "defect": record.as_json()})
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute("SELECT open FROM defects WHERE id = ?", (record.id,))
                was = row.fetchone()
                if was is not None and bool(was[0]) == record.open:
                    # One open and one close per defect (see the Redis adapter).
                    self.db.execute("COMMIT")
                    metrics.DUPLICATE_EVENTS_DROPPED.inc()
                    return True
                self.db.execute(
                    "INSERT INTO defects (id, stream_id, started_at, ended_at, open, doc)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " ended_at = excluded.ended_at, open = excluded.open, doc = excluded.doc",
                    (record.id, record.stream_id, record.started_at, record.ended_at,
                     int(record.open), doc),
                )  # fmt: skip
                if evidence is not None:
                    self.db.execute(
                        "UPDATE defects SET evidence = ? WHERE id = ?", (evidence, record.id)
                    )
                self.db.execute(
                    "INSERT INTO events (committed_at, body) VALUES (?, ?)", (time.time(), event)
                )
                self._commits += 1
                if self._commits % TRIM_EVERY == 0 or evidence is not None:
                    self._trim()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self._appended.notify_all()
        if kind == "open":
            metrics.DEFECTS_RAISED.labels(type=record.type).inc()  # counted at commit
        return True

    def _trim(self) -> None:
        """Bounded: the newest ``max_defects`` (closed ones go first), the newest
        ``MAX_EVIDENCE`` frames, the log's retention. Called inside a transaction."""
        db = self.db
        excess = int(db.execute("SELECT COUNT(*) FROM defects").fetchone()[0]) - self.max_defects
        if excess > 0:
            db.execute(
                "DELETE FROM defects WHERE id IN (SELECT id FROM defects"
                " ORDER BY open, started_at LIMIT ?)",
                (excess,),
            )
        db.execute(
            "UPDATE defects SET evidence = NULL WHERE evidence IS NOT NULL AND id NOT IN"
            " (SELECT id FROM defects WHERE evidence IS NOT NULL"
            " ORDER BY started_at DESC LIMIT ?)",
            (MAX_EVIDENCE,),
        )
        db.execute(
            "DELETE FROM events WHERE committed_at < ? OR seq <= (SELECT MAX(seq) FROM events) - ?",
            (time.time() - self.retention_s, EVENT_LOG_MAX),
        )

    def get(self, defect_id: str) -> DefectRecord | None:
        with self._lock:
            row = self.db.execute(
                "SELECT doc, evidence IS NOT NULL FROM defects WHERE id = ?", (defect_id,)
            ).fetchone()
        return _record(row) if row else None

    def evidence(self, defect_id: str) -> bytes | None:
        with self._lock:
            row = self.db.execute(
                "SELECT evidence FROM defects WHERE id = ?", (defect_id,)
            ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def query(
        self,
        stream_id: str | None = None,
        open_: bool | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[DefectRecord]:
        where, args = ["1"], []  # type: list[str], list[Any]
        if stream_id is not None:
            where.append("stream_id = ?")
            args.append(stream_id)
        if open_ is not None:
            where.append("open = ?")
            args.append(int(open_))
        if since is not None:
            where.append("MAX(started_at, COALESCE(ended_at, 0)) >= ?")
            args.append(since)
        sql = (
            "SELECT doc, evidence IS NOT NULL FROM defects WHERE "
            + " AND ".join(where)
            + " ORDER BY started_at DESC LIMIT ?"
        )
        with self._lock:
            rows = self.db.execute(sql, (*args, limit)).fetchall()
        return [_record(row) for row in rows]

    def forget_stream(self, stream_id: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM defects WHERE stream_id = ?", (stream_id,))

    # ------------------------------------------------------------------ event log
    def after(self, cursor: Cursor | None, count: int, block_s: float) -> list[LoggedEvent]:
        seq = cursor.seq if cursor is not None else 0
        with self._lock:
            rows = self._events_after(seq, count)
            if not rows and block_s > 0:
                self._appended.wait(block_s)
                rows = self._events_after(seq, count)
        return [LoggedEvent(f"{self.token}-{n}", n, at, body.encode()) for n, at, body in rows]

    def _events_after(self, seq: int, count: int) -> list[tuple[int, float, str]]:
        return self.db.execute(
            "SELECT seq, committed_at, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, count),
        ).fetchall()

    def last_seq(self) -> int:
        with self._lock:
            row = self.db.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def hold(self, receiver: str, who: str, ttl_s: float) -> bool:
        return True  # one process delivers

    def release(self, receiver: str, who: str) -> None:
        pass

    def cursor(self, receiver: str) -> Cursor | None:
        with self._lock:
            row = self.db.execute(
                "SELECT entry, seq FROM cursors WHERE receiver = ?", (receiver,)
            ).fetchone()
        return Cursor(row[0], int(row[1])) if row else None

    def advance(self, receiver: str, who: str, to: Cursor) -> bool:
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", (receiver, to.id, to.seq)
            )
        return True

    def recovered(self, receiver: str, count: int) -> list[LoggedEvent] | None:
        return []  # the log is in the same file as the records: never lost alone

    def settle(self, receiver: str, who: str, entry: LoggedEvent) -> bool:
        return True


def _record(row: tuple[str, int]) -> DefectRecord:
    record = DefectRecord.from_json(json.loads(row[0]))
    record.evidence = bool(row[1])
    return record
