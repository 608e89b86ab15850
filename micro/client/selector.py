"""Node selection: which instance of a service gets the next call."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from ..registry import Node

__all__ = ["Selector", "random_choice", "round_robin", "selector_named"]

Selector = Callable[[str, Sequence[Node]], Node]
"""Picks a node for a call to the named service from a non-empty sequence."""


def round_robin() -> Selector:
    """Each service's nodes in turn."""
    counters: dict[str, int] = {}

    def select(service: str, nodes: Sequence[Node]) -> Node:
        n = counters.get(service, 0)
        counters[service] = n + 1
        return nodes[n % len(nodes)]

    return select


def random_choice() -> Selector:
    """A node chosen uniformly at random."""

    def select(service: str, nodes: Sequence[Node]) -> Node:
        return nodes[0] if len(nodes) == 1 else random.choice(nodes)

    return select


def selector_named(name: str) -> Selector:
    """``"round_robin"`` or ``"random"``."""
    if name == "round_robin":
        return round_robin()
    if name == "random":
        return random_choice()
    raise ValueError(f"unknown selector {name!r} (round_robin, random)")
