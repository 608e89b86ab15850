"""Connection settings and pool opening shared by the PostgreSQL backends (store, config)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

from ..errors import MicroError, internal, unavailable

__all__ = ["LOST", "PostgresSettings", "close_pool", "keep_session", "open_pool"]

LOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
"""Driver exceptions meaning "the server is not reachable right now" (``unavailable``)."""


@dataclass(frozen=True)
class PostgresSettings:
    """How to reach PostgreSQL: ``dsn`` (``postgresql://user@host:port/db``), pool bounds
    and timeouts in seconds; validated once, here."""

    dsn: str
    pool_min: int = 1
    pool_max: int = 10
    connect_timeout: float = 5.0
    command_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.dsn.startswith(("postgres://", "postgresql://")):
            raise ValueError("dsn must be a postgresql:// URL")
        if not 0 <= self.pool_min <= self.pool_max or self.pool_max < 1:
            raise ValueError("need 0 <= pool_min <= pool_max and pool_max >= 1")
        if self.connect_timeout <= 0 or self.command_timeout <= 0:
            raise ValueError("timeouts must be positive")


async def keep_session(conn: asyncpg.Connection) -> None:
    """A pool ``reset`` that sends nothing: for pools whose users leave no session state
    (``SET``, ``LISTEN``, cursors, session advisory locks). asyncpg still rolls back an open
    transaction first; its default reset costs one more round trip per acquire."""


async def open_pool(
    settings: PostgresSettings,
    migrate: Callable[[asyncpg.Connection], Awaitable[None]],
    error_id: str,
    *,
    reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """A connected pool whose database has been migrated; ``unavailable`` when the server
    cannot be reached, ``internal`` when it refuses. ``reset`` runs when a connection goes
    back to the pool (None: asyncpg's, which resets every kind of session state)."""
    s = settings
    pool = asyncpg.create_pool(
        s.dsn,
        min_size=s.pool_min,
        max_size=s.pool_max,
        timeout=s.connect_timeout,
        command_timeout=s.command_timeout,
        reset=reset,
    )
    try:
        await asyncio.wait_for(pool, s.connect_timeout * 2)
        async with pool.acquire(timeout=s.connect_timeout) as conn:
            await migrate(conn)
    except BaseException as exc:
        pool.terminate()
        if isinstance(exc, MicroError):
            raise
        if isinstance(exc, LOST):
            raise unavailable(error_id, f"cannot reach PostgreSQL: {exc}") from exc
        if isinstance(exc, asyncpg.PostgresError):
            raise internal(error_id, f"PostgreSQL refused to open: {exc}") from exc
        raise
    return pool


async def close_pool(pool: asyncpg.Pool, timeout: float) -> None:
    """Close ``pool`` gracefully, or drop its connections after ``timeout`` seconds."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except LOST:
        pool.terminate()
