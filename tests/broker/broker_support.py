"""Helpers for the broker tests: a broker service on loopback over a memory broker."""

from __future__ import annotations

from dataclasses import dataclass

from micro import Service
from micro.broker.handler import BrokerHandler
from micro.broker.memory import MemoryBroker
from micro.registry.memory import MemoryRegistry


@dataclass
class Hosted:
    """A running broker service and the memory broker behind it."""

    service: Service
    backing: MemoryBroker

    @property
    def address(self) -> str:
        """Where the service listens."""
        return self.service.address


async def host(backing: MemoryBroker, address: str = "127.0.0.1:0") -> Hosted:
    """Start a broker service over ``backing`` at ``address``."""
    svc = Service("broker", registry=MemoryRegistry(), address=address)
    svc.handler(BrokerHandler(backing), name="Broker")
    await svc.start()
    return Hosted(svc, backing)
