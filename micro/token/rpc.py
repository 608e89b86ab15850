"""Tokens as a client of the ``token`` service (hosted by ``micro server``).

Validation and limits are the server's: errors come back as they were raised there.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, TypeVar

from ..client import Client
from . import DEFAULT_NAMESPACE, DEFAULT_TTL, TokenInfo
from .messages import (
    Empty,
    IssueRequest,
    IssueResponse,
    ListRequest,
    ListResponse,
    RevokeRequest,
    TokenRequest,
)

__all__ = ["SERVICE", "RpcTokens"]

SERVICE = "token"
T = TypeVar("T")


class RpcTokens:
    """Calls the ``token`` service through ``client``: at ``address`` (``host:port`` of
    ``micro server``) when given, else wherever ``client``'s registry finds it. The client
    stays open on :meth:`close`: it belongs to the caller."""

    def __init__(self, client: Client, *, address: str | None = None, timeout: float = 5.0) -> None:
        self.address = address
        self._client = client
        self._timeout = timeout

    async def _call(self, endpoint: str, request: Any, response_type: type[T]) -> T:
        return await self._client.call(
            SERVICE,
            f"Token.{endpoint}",
            request,
            response_type=response_type,
            address=self.address,
            timeout=self._timeout,
        )

    async def issue(
        self,
        scope: str,
        *,
        ttl: float = DEFAULT_TTL,
        metadata: Mapping[str, str] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> tuple[str, TokenInfo]:
        """A new token for ``scope`` living ``ttl`` s, and its info."""
        request = IssueRequest(scope, ttl, dict(metadata or {}), namespace)
        response = await self._call("Issue", request, IssueResponse)
        return response.token, response.info

    async def consume(
        self, token: str, *, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> TokenInfo:
        """Use ``token`` up, exactly once; its info."""
        return await self._call("Consume", TokenRequest(token, scope, namespace), TokenInfo)

    async def check(
        self, token: str, *, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> TokenInfo:
        """The info of a usable ``token``, without using it up."""
        return await self._call("Check", TokenRequest(token, scope, namespace), TokenInfo)

    async def revoke(self, id: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete the live token with public ``id``."""
        await self._call("Revoke", RevokeRequest(id, namespace), Empty)

    async def list(
        self, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> builtins.list[TokenInfo]:
        """The live tokens of ``namespace`` (of ``scope`` if given), oldest first."""
        return (await self._call("List", ListRequest(scope, namespace), ListResponse)).tokens

    async def close(self) -> None:
        """Nothing to release: the client is the caller's."""
