"""The PostgreSQL schema and queries of :mod:`micro.config.postgres`.

``micro_config_documents`` holds one row per namespace (version, document as msgpack with
secret leaves encrypted: the bytes the SQLite backend stores). ``micro_config_changes``
keeps the last :data:`KEEP` versions of each namespace (where the write was, whether it
deleted, the document after it), so a process told about version ``v`` by ``NOTIFY`` can
tell its watchers exactly what changed, old and new tree in hand.
"""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from ..errors import internal
from ._paths import Path, join, split_path
from ._state import Applied
from ._tree import Tree, decode_tree

__all__ = ["CHANNEL", "KEEP", "changes", "load", "lock", "migrate", "save"]

CHANNEL = "micro_config"
"""The ``NOTIFY`` channel; the payload is ``"<version> <namespace>"``."""
KEEP = 256
"""Versions of each namespace kept in the change log."""

_MIGRATION_LOCK = 0x6D6963726F5F6366  # "micro_cf"
_MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS micro_config_documents (
            namespace text PRIMARY KEY,
            version bigint NOT NULL,
            document bytea NOT NULL,
            updated double precision NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS micro_config_changes (
            namespace text NOT NULL,
            version bigint NOT NULL,
            at text NOT NULL,
            deleted boolean NOT NULL,
            document bytea NOT NULL,
            PRIMARY KEY (namespace, version))""",
    ]),
]
SCHEMA_VERSION = _MIGRATIONS[-1][0]


async def migrate(conn: asyncpg.Connection) -> None:
    """Create or upgrade the schema once, whoever else starts at the same time."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS micro_config_schema (version int NOT NULL)")
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM micro_config_schema")
        if current > SCHEMA_VERSION:
            raise internal(
                "config", f"the database has config schema {current}, newer than {SCHEMA_VERSION}"
            )
        for version, statements in _MIGRATIONS:
            if version > current:
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO micro_config_schema (version) VALUES ($1)", version)


async def lock(conn: asyncpg.Connection, namespace: str) -> None:
    """Hold the namespace's advisory lock until the transaction ends."""
    digest = hashlib.blake2b(f"config\0{namespace}".encode(), digest_size=8).digest()
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1)", int.from_bytes(digest, "big", signed=True)
    )


async def load(conn: asyncpg.Connection, namespace: str) -> tuple[Tree, int]:
    """The stored tree and version of ``namespace`` (empty at version 0 when absent)."""
    row = await conn.fetchrow(
        "SELECT document, version FROM micro_config_documents WHERE namespace = $1", namespace
    )
    if row is None:
        return {}, 0
    return decode_tree(bytes(row["document"])), int(row["version"])


async def save(conn: asyncpg.Connection, applied: Applied, now: float) -> None:
    """Store the result of a write, log it and notify every listener (at commit)."""
    args: list[Any] = [applied.namespace, applied.version, applied.stored]
    await conn.execute(
        "INSERT INTO micro_config_documents (namespace, version, document, updated) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (namespace) DO UPDATE SET "
        "version = excluded.version, document = excluded.document, updated = excluded.updated",
        *args, now,
    )
    await conn.execute(
        "INSERT INTO micro_config_changes (namespace, version, at, deleted, document) "
        "VALUES ($1, $2, $4, $5, $3)",
        *args, join(applied.at), applied.deleted,
    )
    await conn.execute(
        "DELETE FROM micro_config_changes WHERE namespace = $1 AND version <= $2",
        applied.namespace, applied.version - KEEP,
    )
    payload = f"{applied.version} {applied.namespace}"
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


async def changes(
    conn: asyncpg.Connection, namespace: str, first: int, last: int
) -> list[tuple[int, Path, bool, Tree, bytes]]:
    """The logged writes of ``namespace`` from version ``first`` to ``last``, in order."""
    rows = await conn.fetch(
        "SELECT version, at, deleted, document FROM micro_config_changes "
        "WHERE namespace = $1 AND version >= $2 AND version <= $3 ORDER BY version",
        namespace, first, last,
    )
    return [
        (int(r["version"]), split_path(r["at"]), bool(r["deleted"]),
         decode_tree(bytes(r["document"])), bytes(r["document"]))
        for r in rows
    ]
