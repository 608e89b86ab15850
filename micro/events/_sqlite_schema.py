"""The SQLite layout of the events log, and the queries that read it (run in a thread).

::

    topics   name, last_seq, count, bytes, retention (JSON; NULL: the backend default)
    events   (topic, seq) -> ts, deliver_at, key, message_id, metadata (JSON), body
    groups   (topic, name) -> cursor
    pending  (topic, grp, seq) -> deliveries, due       one row per unsettled event
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from . import Retention
from ._log import Record

__all__ = [
    "SCHEMA",
    "GroupRow",
    "PendingRow",
    "Snapshot",
    "TopicRow",
    "bytes_through",
    "connect",
    "decode_metadata",
    "encode_metadata",
    "load",
    "read_records",
    "seq_at",
    "snapshot",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0,
    count INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    retention TEXT
);
CREATE TABLE IF NOT EXISTS events (
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    deliver_at REAL,
    key TEXT,
    message_id TEXT,
    metadata TEXT,
    body BLOB NOT NULL,
    PRIMARY KEY (topic, seq)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (topic, ts, seq);
CREATE INDEX IF NOT EXISTS events_with_id ON events (ts) WHERE message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS groups (
    topic TEXT NOT NULL,
    name TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    PRIMARY KEY (topic, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    due REAL,
    PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
"""

_COLUMNS = "seq, ts, body, metadata, key, deliver_at, message_id"
_meta_encoder = msgspec.json.Encoder()
_meta_decoder = msgspec.json.Decoder(dict[str, str])
_retention_decoder = msgspec.json.Decoder(Retention)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL``: a commit is fsynced."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def encode_metadata(metadata: dict[str, str]) -> str | None:
    """Metadata as stored (NULL when empty)."""
    return _meta_encoder.encode(metadata).decode() if metadata else None


def decode_metadata(text: str | None) -> dict[str, str]:
    """Stored metadata back as a dict."""
    return _meta_decoder.decode(text) if text else {}


def _record(row: tuple[Any, ...]) -> Record:
    seq, ts, body, metadata, key, deliver_at, message_id = row
    return Record(seq, ts, bytes(body), decode_metadata(metadata), key, deliver_at, message_id)


def read_records(conn: sqlite3.Connection, topic: str, seq: int, limit: int) -> list[Record]:
    """Up to ``limit`` records of ``topic`` from ``seq`` on."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE topic = ? AND seq >= ? ORDER BY seq LIMIT ?",
        (topic, seq, limit),
    ).fetchall()
    return [_record(row) for row in rows]


def seq_at(conn: sqlite3.Connection, topic: str, ts: float) -> int | None:
    """The first sequence of ``topic`` stamped at or after ``ts``."""
    row = conn.execute(
        "SELECT seq FROM events WHERE topic = ? AND ts >= ? ORDER BY ts, seq LIMIT 1",
        (topic, ts),
    ).fetchone()
    return None if row is None else int(row[0])


def bytes_through(conn: sqlite3.Connection, topic: str, excess: int) -> int | None:
    """The smallest sequence such that the bodies of ``topic`` up to it add up to ``excess``."""
    total, seq = 0, 0
    while True:
        rows = conn.execute(
            "SELECT seq, length(body) FROM events WHERE topic = ? AND seq > ? ORDER BY seq "
            "LIMIT 1000",
            (topic, seq),
        ).fetchall()
        if not rows:
            return None
        for seq, size in rows:
            total += size
            if total >= excess:
                return int(seq)


class TopicRow(msgspec.Struct):
    """A topic as stored, with the range and last stamp read from its events."""

    name: str
    last_seq: int
    count: int
    bytes: int
    retention: Retention | None
    first_seq: int
    last_ts: float


class PendingRow(msgspec.Struct):
    """An unsettled event of a group, with the key of its record (if still stored)."""

    seq: int
    deliveries: int
    due: float | None
    key: str | None


class GroupRow(msgspec.Struct):
    """A group, its cursor and its unsettled events in sequence order."""

    topic: str
    name: str
    cursor: int
    pending: list[PendingRow]


class Snapshot(msgspec.Struct):
    """Everything the engine loads at open; ``ids`` are ``(topic, message_id, seq, ts)``
    of events young enough for de-duplication, oldest first."""

    topics: list[TopicRow]
    groups: list[GroupRow]
    ids: list[tuple[str, str, int, float]]


def snapshot(conn: sqlite3.Connection, ids_since: float) -> Snapshot:
    """Read the state the engine keeps in memory."""
    topics: list[TopicRow] = []
    for name, last_seq, count, size, retention in conn.execute(
        "SELECT name, last_seq, count, bytes, retention FROM topics ORDER BY name"
    ).fetchall():
        first = conn.execute("SELECT min(seq) FROM events WHERE topic = ?", (name,)).fetchone()
        last = conn.execute(
            "SELECT ts FROM events WHERE topic = ? ORDER BY seq DESC LIMIT 1", (name,)
        ).fetchone()
        topics.append(
            TopicRow(
                name,
                last_seq,
                count,
                size,
                _retention_decoder.decode(retention) if retention else None,
                first[0] if first[0] is not None else last_seq + 1,
                last[0] if last is not None else 0.0,
            )
        )
    groups: dict[tuple[str, str], GroupRow] = {}
    for topic, name, cursor in conn.execute("SELECT topic, name, cursor FROM groups").fetchall():
        groups[(topic, name)] = GroupRow(topic, name, cursor, [])
    for topic, grp, seq, deliveries, due, key in conn.execute(
        "SELECT p.topic, p.grp, p.seq, p.deliveries, p.due, e.key FROM pending p "
        "LEFT JOIN events e ON e.topic = p.topic AND e.seq = p.seq "
        "ORDER BY p.topic, p.grp, p.seq"
    ).fetchall():
        group = groups.get((topic, grp))
        if group is not None:
            group.pending.append(PendingRow(seq, deliveries, due, key))
    ids = [
        (topic, message_id, seq, ts)
        for topic, message_id, seq, ts in conn.execute(
            "SELECT topic, message_id, seq, ts FROM events "
            "WHERE message_id IS NOT NULL AND ts >= ? ORDER BY ts, seq",
            (ids_since,),
        ).fetchall()
    ]
    return Snapshot(topics, list(groups.values()), ids)


def load(conn: sqlite3.Connection) -> dict[str, int]:
    """The last sequence of every topic (what the writer numbers from)."""
    return dict(conn.execute("SELECT name, last_seq FROM topics").fetchall())
