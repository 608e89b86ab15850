"""The client of the ``auth`` service: :class:`RpcAuth`.

Methods mirror :class:`~micro.auth.core.AuthCore`; errors arrive as
:class:`~micro.errors.MicroError` with the service's code and detail. Calls carry
``token`` (``authorization: Bearer <token>``) when one is given, else whatever credentials
the :class:`~micro.client.Client` adds. An empty ``namespace`` means the caller's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from ..client import Client
from . import DEFAULT_NAMESPACE, ID, Account, Claims, Rule, Tokens
from .messages import (
    AccountRequest,
    ApiKey,
    CreateKeyRequest,
    CreateKeyResponse,
    CreateRuleRequest,
    Empty,
    ExchangeRequest,
    GenerateRequest,
    GenerateResponse,
    InspectRequest,
    JwksResponse,
    KeyRequest,
    ListKeysRequest,
    ListKeysResponse,
    ListResponse,
    ListRulesResponse,
    NamespaceRequest,
    RevokeRequest,
    RotateKeysResponse,
    RuleRequest,
    SetSecretRequest,
    TokenRequest,
)

__all__ = ["RpcAuth"]

SERVICE = ID
T = TypeVar("T")


class RpcAuth:
    """Talks to the auth service at ``address`` (``host:port`` of ``micro server``; ``None``:
    found through the client's registry), as ``token`` when given."""

    def __init__(
        self,
        address: str | None = None,
        client: Client | None = None,
        *,
        timeout: float = 5.0,
        token: str | None = None,
    ) -> None:
        self.address = address
        self._client = client or Client()
        self._owns_client = client is None
        self._timeout = timeout
        self._metadata = {"authorization": f"Bearer {token}"} if token else None

    def with_token(self, token: str | None) -> RpcAuth:
        """A client sharing this one's connection that calls as ``token``."""
        return RpcAuth(self.address, self._client, timeout=self._timeout, token=token)

    async def _call(self, endpoint: str, req: Any, resp: type[T]) -> T:
        return await self._client.call(
            SERVICE,
            f"Auth.{endpoint}",
            req,
            address=self.address,
            timeout=self._timeout,
            metadata=dict(self._metadata) if self._metadata else None,
            response_type=resp,
        )

    async def close(self) -> None:
        """Close the client if this object made it."""
        if self._owns_client:
            await self._client.close()

    # -- public --------------------------------------------------------------------------------

    async def login(self, id: str, secret: str, namespace: str = DEFAULT_NAMESPACE) -> Tokens:
        """Log in with an account id and secret."""
        return await self._call("Token", TokenRequest(id, secret, namespace), Tokens)

    async def refresh(self, refresh_token: str) -> Tokens:
        """New tokens for the current refresh token of a session."""
        return await self._call("Token", TokenRequest(refresh_token=refresh_token), Tokens)

    async def exchange(self, api_key: str) -> Tokens:
        """An access token for an API key."""
        return await self._call("Exchange", ExchangeRequest(api_key), Tokens)

    async def jwks(self) -> dict[str, Any]:
        """The public keys that verify access tokens (``{"keys": [...]}``)."""
        return {"keys": (await self._call("Jwks", Empty(), JwksResponse)).keys}

    # -- any account ---------------------------------------------------------------------------

    async def revoke(self, refresh_token: str) -> None:
        """Log out: end the session of ``refresh_token``."""
        await self._call("Revoke", RevokeRequest(refresh_token), Empty)

    async def inspect(self, token: str) -> Claims:
        """The claims of a valid access token."""
        return await self._call("Inspect", InspectRequest(token), Claims)

    async def create_key(
        self,
        account_id: str = "",
        *,
        name: str = "",
        ttl: float | None = None,
        namespace: str = "",
    ) -> tuple[ApiKey, str]:
        """A new API key (of the caller when ``account_id`` is empty) and its key string."""
        req = CreateKeyRequest(account_id, name, ttl, namespace)
        resp = await self._call("CreateKey", req, CreateKeyResponse)
        return resp.key, resp.api_key

    async def list_keys(self, namespace: str = "", account_id: str | None = None) -> list[ApiKey]:
        """API keys of a namespace (or of one account)."""
        req = ListKeysRequest(namespace, account_id)
        return (await self._call("ListKeys", req, ListKeysResponse)).keys

    async def delete_key(self, key_id: str, namespace: str = "") -> None:
        """Delete an API key."""
        await self._call("DeleteKey", KeyRequest(key_id, namespace), Empty)

    # -- administrators ------------------------------------------------------------------------

    async def create_account(
        self,
        id: str,
        *,
        secret: str | None = None,
        type: Literal["user", "service"] = "user",
        scopes: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        namespace: str = "",
    ) -> tuple[Account, str]:
        """Create an account; returns it and its secret."""
        req = GenerateRequest(id, secret, type, list(scopes), dict(metadata or {}), namespace)
        resp = await self._call("Generate", req, GenerateResponse)
        return resp.account, resp.secret

    async def list_accounts(self, namespace: str = "") -> list[Account]:
        """The accounts of a namespace."""
        return (await self._call("List", NamespaceRequest(namespace), ListResponse)).accounts

    async def delete_account(self, id: str, namespace: str = "") -> None:
        """Delete an account and its API keys."""
        await self._call("Delete", AccountRequest(id, namespace), Empty)

    async def set_secret(self, id: str, secret: str, namespace: str = "") -> None:
        """Replace an account's secret."""
        await self._call("SetSecret", SetSecretRequest(id, secret, namespace), Empty)

    async def create_rule(self, rule: Rule, namespace: str = "") -> None:
        """Add a rule."""
        await self._call("CreateRule", CreateRuleRequest(rule, namespace), Empty)

    async def delete_rule(self, id: str, namespace: str = "") -> None:
        """Delete a rule."""
        await self._call("DeleteRule", RuleRequest(id, namespace), Empty)

    async def list_rules(self, namespace: str = "") -> list[Rule]:
        """The rules of a namespace."""
        req = NamespaceRequest(namespace)
        return (await self._call("ListRules", req, ListRulesResponse)).rules

    async def rotate_keys(self) -> str:
        """Make a new signing key; returns its ``kid``."""
        return (await self._call("RotateKeys", Empty(), RotateKeysResponse)).kid
