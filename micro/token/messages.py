"""Request and response types of the ``token`` RPC service.

Every request names its ``namespace`` (default ``micro``); the handler decides which
namespace it really acts in (:meth:`~micro.token.handler.TokenHandler._namespace`).
"""

from __future__ import annotations

import msgspec

from . import DEFAULT_NAMESPACE, DEFAULT_TTL, TokenInfo

__all__ = [
    "Empty",
    "IssueRequest",
    "IssueResponse",
    "ListRequest",
    "ListResponse",
    "RevokeRequest",
    "TokenRequest",
]


class Empty(msgspec.Struct):
    """No fields."""


class IssueRequest(msgspec.Struct):
    """Issue a token for ``scope`` living ``ttl`` seconds."""

    scope: str
    ttl: float = DEFAULT_TTL
    metadata: dict[str, str] = {}
    namespace: str = DEFAULT_NAMESPACE


class IssueResponse(msgspec.Struct):
    """The token string (the only time it is sent) and its info."""

    token: str
    info: TokenInfo


class TokenRequest(msgspec.Struct):
    """Consume or check ``token``, only for ``scope`` if given."""

    token: str
    scope: str | None = None
    namespace: str = DEFAULT_NAMESPACE


class RevokeRequest(msgspec.Struct):
    """Revoke the token with public ``id``."""

    id: str
    namespace: str = DEFAULT_NAMESPACE


class ListRequest(msgspec.Struct):
    """List the live tokens, of ``scope`` if given."""

    scope: str | None = None
    namespace: str = DEFAULT_NAMESPACE


class ListResponse(msgspec.Struct):
    """Live tokens, oldest first."""

    tokens: list[TokenInfo] = []
