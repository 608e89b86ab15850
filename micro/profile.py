"""Profiles: which backend each block of a service uses.

A profile maps a block name to a factory that builds the block for a :class:`Service`.
``local`` (the default) reaches every block through the services of ``micro server`` at
``MICRO_SERVER``; the server itself keeps the data (SQLite files in its data dir). The
cluster profile (PostgreSQL, NATS, etcd) will be one more entry here; services do not
change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .service import Service

__all__ = ["BLOCKS", "PROFILES", "Profile", "profile_named"]

BLOCKS = ("registry", "store", "config", "broker", "events", "sync")


@dataclass(frozen=True)
class Profile:
    """A named bundle of block factories."""

    name: str
    factories: Mapping[str, Callable[[Service], object]]


def _rpc_registry(svc: Service) -> object:
    from .registry.rpc import RpcRegistry

    tls = svc.tls_client
    return RpcRegistry(
        svc.settings.server, credentials=svc.auth_header, ssl=tls.context if tls else None
    )


def _rpc_store(svc: Service) -> object:
    from .store.rpc import RpcStore

    return RpcStore(svc.settings.server, client=svc.client)


def _rpc_config(svc: Service) -> object:
    from .config.rpc import RpcConfig

    return RpcConfig(svc.settings.server, client=svc.client)


def _rpc_broker(svc: Service) -> object:
    from .broker.rpc import RpcBroker

    return RpcBroker(svc.settings.server, client=svc.client)


def _rpc_events(svc: Service) -> object:
    from .events.rpc import RpcEvents

    return RpcEvents(svc.settings.server, client=svc.client)


def _rpc_sync(svc: Service) -> object:
    from .sync.rpc import RpcSync

    return RpcSync(svc.settings.server, client=svc.client)


LOCAL = Profile(
    "local",
    {
        "registry": _rpc_registry,
        "store": _rpc_store,
        "config": _rpc_config,
        "broker": _rpc_broker,
        "events": _rpc_events,
        "sync": _rpc_sync,
    },
)

# In the cluster profile services still reach the blocks through micro server(s); the
# servers keep the data on PostgreSQL, NATS and etcd (micro/server/backends.py).
PROFILES: dict[str, Profile] = {"local": LOCAL, "cluster": Profile("cluster", LOCAL.factories)}


def profile_named(name: str) -> Profile:
    """The profile called ``name`` (``MICRO_PROFILE``)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None
