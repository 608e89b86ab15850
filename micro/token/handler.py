"""The ``token`` RPC service: a thin layer over whichever token backend runs it."""

from __future__ import annotations

from ..context import Context
from ..service.endpoint import idempotent
from . import TokenInfo, Tokens
from .messages import (
    Empty,
    IssueRequest,
    IssueResponse,
    ListRequest,
    ListResponse,
    RevokeRequest,
    TokenRequest,
)

__all__ = ["TokenHandler"]


class TokenHandler:
    """Serves ``Token.Issue``, ``Consume``, ``Check``, ``Revoke`` and ``List``. ``Check``
    and ``List`` are marked idempotent (safe to retry); ``Consume`` is not."""

    def __init__(self, backend: Tokens) -> None:
        self._backend = backend

    def _namespace(self, ctx: Context, requested: str) -> str:
        """The namespace a call acts in.

        For now the one the request names. This is the single place where namespace
        enforcement goes (the caller's account decides, e.g. refusing or overriding a
        namespace that is not the account's)."""
        return requested

    async def issue(self, ctx: Context, req: IssueRequest) -> IssueResponse:
        """Issue a token; the response carries the token string once."""
        token, info = await self._backend.issue(
            req.scope,
            ttl=req.ttl,
            metadata=req.metadata,
            namespace=self._namespace(ctx, req.namespace),
        )
        return IssueResponse(token, info)

    async def consume(self, ctx: Context, req: TokenRequest) -> TokenInfo:
        """Use a token up (exactly once)."""
        return await self._backend.consume(
            req.token, scope=req.scope, namespace=self._namespace(ctx, req.namespace)
        )

    @idempotent
    async def check(self, ctx: Context, req: TokenRequest) -> TokenInfo:
        """A usable token's info, without using it up."""
        return await self._backend.check(
            req.token, scope=req.scope, namespace=self._namespace(ctx, req.namespace)
        )

    async def revoke(self, ctx: Context, req: RevokeRequest) -> Empty:
        """Delete a token by its public id."""
        await self._backend.revoke(req.id, self._namespace(ctx, req.namespace))
        return Empty()

    @idempotent
    async def list(self, ctx: Context, req: ListRequest) -> ListResponse:
        """The live tokens, of a scope if given."""
        return ListResponse(
            await self._backend.list(req.scope, self._namespace(ctx, req.namespace))
        )
