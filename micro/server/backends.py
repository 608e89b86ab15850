"""Which engine holds each block's data in ``micro server``: chosen by the profile.

``local`` (the default): everything in the data dir (SQLite files) or in-process; zero
external servers. ``cluster``: registry on etcd, store and config on PostgreSQL, events on
NATS JetStream, broker on NATS core, so several ``micro server`` processes on the same
engines form one platform. Services do not change: they reach the blocks through the
server's RPC services either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..broker import Broker
from ..config import Config
from ..events import Events
from ..registry import Registry
from ..store import Store
from ..sync import Sync

__all__ = ["Backends", "ClusterSettings", "open_backends"]


@dataclass(frozen=True)
class ClusterSettings:
    """Where the engines of the cluster profile are.

    ``MICRO_POSTGRES_DSN`` (``postgresql://user@host:port/db``), ``MICRO_NATS_URL``
    (comma-separated ``nats://host:port``), ``MICRO_ETCD_ENDPOINTS`` (comma-separated
    ``host:port``).
    """

    postgres_dsn: str
    nats_servers: tuple[str, ...]
    etcd_endpoints: tuple[str, ...]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ClusterSettings:
        """Read and validate the engine addresses; ``ValueError`` names what is missing."""
        env = dict(os.environ) if env is None else env

        def listed(name: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())

        settings = cls(
            postgres_dsn=env.get("MICRO_POSTGRES_DSN", ""),
            nats_servers=listed("MICRO_NATS_URL"),
            etcd_endpoints=listed("MICRO_ETCD_ENDPOINTS"),
        )
        missing = [
            name
            for name, value in (
                ("MICRO_POSTGRES_DSN", settings.postgres_dsn),
                ("MICRO_NATS_URL", settings.nats_servers),
                ("MICRO_ETCD_ENDPOINTS", settings.etcd_endpoints),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"the cluster profile needs {', '.join(missing)}")
        return settings


@dataclass
class Backends:
    """The block backends one server hosts, and what it must do to start and close them."""

    registry: Registry
    broker: Broker
    store: Store
    config: Config
    events: Events
    sync: Sync
    reaps: bool  # the registry expires nodes only when the server reaps it (memory)
    _owned: list[Any] = field(default_factory=list)

    async def start(self) -> None:
        """Open the backends that need it."""
        for backend in self._owned:
            start = getattr(backend, "start", None)
            if start is not None:
                await start()

    def end_streams(self) -> None:
        """End open subscribe/observe streams so the server can drain at once."""
        end = getattr(self.sync, "end_observers", None)
        if end is not None:
            end()

    async def close(self) -> None:
        """Close every backend (the registry and broker last)."""
        for backend in reversed(self._owned):
            await backend.close()


def open_backends(profile: str, data_dir: Path) -> Backends:
    """The backends of ``profile`` (``local`` or ``cluster``)."""
    from ..config.keys import load_key

    key = load_key(data_dir)
    if profile == "local":
        from ..broker.memory import MemoryBroker
        from ..config.sqlite import SqliteConfig
        from ..events.sqlite import SqliteEvents
        from ..registry.memory import MemoryRegistry
        from ..store.sqlite import SqliteStore
        from ..sync.sqlite import SqliteSync

        registry, broker = MemoryRegistry(), MemoryBroker()
        store, config = (
            SqliteStore(data_dir / "store.db"),
            SqliteConfig(data_dir / "config.db", key),
        )
        events, sync = SqliteEvents(data_dir / "events.db"), SqliteSync(data_dir / "sync.db")
        owned: list[Any] = [registry, broker, store, config, events, sync]
        return Backends(registry, broker, store, config, events, sync, True, owned)
    if profile == "cluster":
        from ..broker.nats import NatsBroker
        from ..config.postgres import PostgresConfig
        from ..events.nats import NatsEvents
        from ..registry.etcd import EtcdRegistry
        from ..store.postgres import PostgresStore
        from ..sync.etcd import EtcdSync

        c = ClusterSettings.from_env()
        cluster_registry = EtcdRegistry(list(c.etcd_endpoints))
        nats_broker = NatsBroker(list(c.nats_servers))
        pg_store, pg_config = PostgresStore(c.postgres_dsn), PostgresConfig(c.postgres_dsn, key)
        nats_events = NatsEvents(list(c.nats_servers))
        etcd_sync = EtcdSync(list(c.etcd_endpoints))
        owned = [cluster_registry, nats_broker, pg_store, pg_config, nats_events, etcd_sync]
        return Backends(
            cluster_registry, nats_broker, pg_store, pg_config, nats_events, etcd_sync, False, owned
        )
    raise ValueError(f"unknown profile {profile!r} (local, cluster)")
