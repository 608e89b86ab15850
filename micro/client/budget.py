"""What a call inherits from the call being handled: its deadline and metadata."""

from __future__ import annotations

import time

from ..context import current_context
from ..errors import MicroError, timeout

__all__ = ["inherit", "timeout_error"]


def inherit(
    wait: float | None, metadata: dict[str, str] | None, service: str, endpoint: str
) -> tuple[float | None, dict[str, str] | None]:
    """Bound ``wait`` (seconds, or ``None`` for no deadline) by the deadline of the call
    being handled, if any, and add its metadata under ours: what propagates across hops."""
    ctx = current_context()
    if ctx is not None:
        if ctx.deadline is not None:
            left = ctx.deadline - time.monotonic()
            if left <= 0:
                raise timeout_error(service, endpoint)
            wait = left if wait is None else min(wait, left)
        if ctx.metadata:
            metadata = {**ctx.metadata, **metadata} if metadata else ctx.metadata
    return wait, metadata


def timeout_error(service: str, endpoint: str) -> MicroError:
    """The error of a call whose deadline passed."""
    return timeout(service, f"{endpoint} did not answer before the deadline")
