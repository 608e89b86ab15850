"""Micro for Python: typed microservices over a fast RPC.

The public surface is re-exported here; everything else is an implementation detail of its
package.
"""

from __future__ import annotations

from .client import Client, Stream
from .context import Context, current_context
from .errors import (
    MicroError,
    bad_request,
    conflict,
    forbidden,
    internal,
    not_found,
    timeout,
    too_large,
    unauthorized,
    unavailable,
)
from .service import Service
from .service.endpoint import HandlerFunc, Middleware, idempotent, public, route

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Context",
    "HandlerFunc",
    "MicroError",
    "Middleware",
    "Service",
    "Stream",
    "__version__",
    "bad_request",
    "conflict",
    "current_context",
    "forbidden",
    "idempotent",
    "internal",
    "not_found",
    "public",
    "route",
    "timeout",
    "too_large",
    "unauthorized",
    "unavailable",
]
