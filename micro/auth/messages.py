"""Request and response types of the ``auth`` RPC service, and :class:`ApiKey`.

An empty ``namespace`` in a management request means "the caller's own namespace" (the
default namespace for a caller without an account). Size limits are part of the types, so an
oversized field is refused with ``bad_request`` naming it before any handler code runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from . import DEFAULT_NAMESPACE, MAX_TOKEN, Account, Rule

__all__ = [
    "MAX_SECRET",
    "AccountRequest",
    "ApiKey",
    "CreateKeyRequest",
    "CreateKeyResponse",
    "CreateRuleRequest",
    "Empty",
    "ExchangeRequest",
    "GenerateRequest",
    "GenerateResponse",
    "InspectRequest",
    "JwksResponse",
    "KeyRequest",
    "ListKeysRequest",
    "ListKeysResponse",
    "ListResponse",
    "ListRulesResponse",
    "NamespaceRequest",
    "RevokeRequest",
    "RotateKeysResponse",
    "RuleRequest",
    "SetSecretRequest",
    "TokenRequest",
]

MAX_SECRET = 1024
"""Longest account secret (argon2 hashes whatever it is given; keep that bounded)."""

_Secret = Annotated[str, msgspec.Meta(max_length=MAX_SECRET)]
_Token = Annotated[str, msgspec.Meta(max_length=MAX_TOKEN)]
_Name = Annotated[str, msgspec.Meta(max_length=256)]


class ApiKey(msgspec.Struct, frozen=True, omit_defaults=True):
    """A long-lived credential of ``account`` that programs exchange for access tokens.
    ``id`` is a public handle (to list and delete it), never the key itself; ``expires``
    is ``0`` for a key that does not expire."""

    id: str
    account: str
    namespace: str = DEFAULT_NAMESPACE
    name: str = ""
    created: float = 0.0
    expires: float = 0.0


class Empty(msgspec.Struct):
    """No fields."""


class TokenRequest(msgspec.Struct, omit_defaults=True):
    """Log in with ``id`` + ``secret`` (in ``namespace``), or refresh with ``refresh_token``."""

    id: _Name = ""
    secret: _Secret = ""
    namespace: _Name = DEFAULT_NAMESPACE
    refresh_token: _Token = ""


class ExchangeRequest(msgspec.Struct):
    """Trade an API key for an access token."""

    api_key: _Token


class JwksResponse(msgspec.Struct):
    """The public keys that verify access tokens (a JWKS)."""

    keys: list[dict[str, Any]] = []


class RevokeRequest(msgspec.Struct):
    """Log out: end the session (refresh token family) of ``refresh_token``."""

    refresh_token: _Token


class InspectRequest(msgspec.Struct):
    """Verify an access token."""

    token: _Token


class GenerateRequest(msgspec.Struct, omit_defaults=True):
    """Create an account; without ``secret`` one is generated and returned."""

    id: _Name
    secret: _Secret | None = None
    type: Literal["user", "service"] = "user"
    scopes: list[_Name] = []
    metadata: dict[_Name, Annotated[str, msgspec.Meta(max_length=4096)]] = {}
    namespace: _Name = ""


class GenerateResponse(msgspec.Struct):
    """The new account and its secret (the only time the secret is shown)."""

    account: Account
    secret: str


class NamespaceRequest(msgspec.Struct, omit_defaults=True):
    """Names a namespace (empty: the caller's)."""

    namespace: _Name = ""


class ListResponse(msgspec.Struct):
    """The accounts of a namespace."""

    accounts: list[Account] = []


class AccountRequest(msgspec.Struct, omit_defaults=True):
    """Names an account."""

    id: _Name
    namespace: _Name = ""


class SetSecretRequest(msgspec.Struct, omit_defaults=True):
    """Replace an account's secret (its sessions end)."""

    id: _Name
    secret: _Secret
    namespace: _Name = ""


class CreateKeyRequest(msgspec.Struct, omit_defaults=True):
    """Create an API key for ``account`` (empty: the caller), expiring after ``ttl`` s."""

    account: _Name = ""
    name: _Name = ""
    ttl: float | None = None
    namespace: _Name = ""


class CreateKeyResponse(msgspec.Struct):
    """The new key's description and the key itself (the only time it is shown)."""

    key: ApiKey
    api_key: str


class ListKeysRequest(msgspec.Struct, omit_defaults=True):
    """API keys of a namespace, or of one ``account`` in it."""

    namespace: _Name = ""
    account: _Name | None = None


class ListKeysResponse(msgspec.Struct):
    """API keys (never the keys themselves)."""

    keys: list[ApiKey] = []


class KeyRequest(msgspec.Struct, omit_defaults=True):
    """Names an API key by its id."""

    id: _Name
    namespace: _Name = ""


class CreateRuleRequest(msgspec.Struct, omit_defaults=True):
    """Add a rule to a namespace."""

    rule: Rule
    namespace: _Name = ""


class RuleRequest(msgspec.Struct, omit_defaults=True):
    """Names a rule."""

    id: _Name
    namespace: _Name = ""


class ListRulesResponse(msgspec.Struct):
    """The rules of a namespace."""

    rules: list[Rule] = []


class RotateKeysResponse(msgspec.Struct):
    """The id of the new signing key."""

    kid: str
