"""The per-call context: metadata and a deadline that follow a call across hops."""

from __future__ import annotations

import contextvars
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .auth import Claims

__all__ = ["Context", "current_context"]

_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "micro_context", default=None
)


class Context:
    """What a handler knows about the call it serves.

    ``metadata`` holds string headers (auth token, trace ids, namespace, ...). ``deadline`` is
    a :func:`time.monotonic` instant after which the caller has given up, or ``None``. Calls
    made while handling a request inherit both, so a deadline set at the edge bounds the
    whole chain of calls. ``account`` is the verified caller (set by the auth middleware,
    never read from metadata as sent); ``identity`` the peer's certificate identity when the
    call came over mutual TLS.
    """

    __slots__ = ("account", "deadline", "endpoint", "identity", "metadata", "peer", "service")

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
        self.account: Claims | None = None  # the caller, once auth verified its token
        self.identity = ""  # the caller's mTLS identity (spiffe://namespace/service), if any

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
