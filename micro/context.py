"""The per-call context: metadata and a deadline that follow a call across hops."""

from __future__ import annotations

import contextvars
import time

__all__ = ["Context", "current_context"]

_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "micro_context", default=None
)


class Context:
    """What a handler knows about the call it serves.

    ``metadata`` holds string headers (auth token, trace ids, namespace, ...). ``deadline`` is
    a :func:`time.monotonic` instant after which the caller has given up, or ``None``. Calls
    made while handling a request inherit both, so a deadline set at the edge bounds the
    whole chain of calls.
    """

    __slots__ = ("deadline", "endpoint", "metadata", "peer", "service")

    def __init__(
        self,
        metadata: dict[str, str] | None = None,
        deadline: float | None = None,
        service: str = "",
        endpoint: str = "",
        peer: str = "",
    ) -> None:
        self.metadata: dict[str, str] = metadata if metadata is not None else {}
        self.deadline = deadline
        self.service = service
        self.endpoint = endpoint
        self.peer = peer

    @classmethod
    def with_timeout(cls, seconds: float, metadata: dict[str, str] | None = None) -> Context:
        """A context whose deadline is ``seconds`` from now."""
        return cls(metadata=metadata, deadline=time.monotonic() + seconds)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    @property
    def expired(self) -> bool:
        """True when the deadline has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def __repr__(self) -> str:
        return (
            f"Context(service={self.service!r}, endpoint={self.endpoint!r}, "
            f"remaining={self.remaining()!r}, metadata={self.metadata!r})"
        )


def current_context() -> Context | None:
    """The context of the call being handled by the running code, if any."""
    return _current.get()
