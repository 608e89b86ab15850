"""Per-node health: probe results folded into up/down state and registry changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..registry import Node, ServiceInfo
from . import NodeHealth

__all__ = ["NodeKey", "NodeState"]

NodeKey = tuple[str, str, str]  # service, version, node id


@dataclass
class NodeState:
    """What the monitor remembers about one node, including the info to re-register it."""

    info: ServiceInfo  # the service version with this node only
    state: Literal["up", "down"] = "up"
    failures: int = 0
    latency_ms: float | None = None
    checked: float | None = None
    error: str = ""
    down_since: float | None = None

    @property
    def node(self) -> Node:
        """The node itself."""
        return self.info.nodes[0]

    def health(self) -> NodeHealth:
        """The public view."""
        return NodeHealth(
            service=self.info.name,
            version=self.info.version,
            node=self.node.id,
            address=self.node.address,
            state=self.state,
            failures=self.failures,
            latency_ms=self.latency_ms,
            checked=self.checked,
            error=self.error,
        )
