"""Auth: accounts, tokens and rules — who may call what.

**Accounts** are users or services: an ``id`` unique in its ``namespace``, ``scopes`` (what
rules grant by), string ``metadata``. Secrets are hashed with argon2id; only the hash is kept.

**Tokens.** Logging in (``id`` + secret) gives a short-lived *access token* — a JWT signed
with Ed25519 (``alg: EdDSA``, the signing key named by ``kid``) — and a *refresh token*, an
opaque random string. A refresh token is used once: refreshing returns a new pair and retires
the old refresh token; presenting a retired one again (a stolen token replayed) revokes the
whole family, so neither thief nor victim can go on. *API keys* are long-lived secrets for
programs; they are exchanged for access tokens. Services verify access tokens locally with
the public keys the auth service publishes (JWKS) and never call it per request. Keys rotate:
a new key signs, old keys verify until every token they signed has expired.

**Rules** ``{id, scope, resource, access, priority}`` decide what an account may call:
highest ``priority`` first (ties: the more specific resource, then the rule id), the first
rule whose resource matches the called ``service``/``endpoint`` and whose scope matches the
caller decides (``grant`` or ``deny``). A rule with scope :data:`PUBLIC` (``""``) matches
everyone, even without an account; :data:`ANY` (``"*"``) matches every account; any other
scope matches accounts that have it. No matching rule: ``unauthorized`` (401) without an
account, else ``forbidden`` (403). Endpoints marked ``@public`` count as a rule granting
:data:`PUBLIC` access to that endpoint.

**Namespaces** isolate tenants: a token is valid only in the namespace of its account.

Modules: :mod:`micro.auth.keys` (signing keys, JWKS), :mod:`micro.auth.verify` (local token
verification), :mod:`micro.auth.rules` (rule evaluation), :mod:`micro.auth.core` (accounts,
logins, refresh, API keys and rules kept in a :class:`~micro.store.Store`),
:mod:`micro.auth.handler` (the ``auth`` service), :mod:`micro.auth.rpc` (its client).
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "ACCESS_TTL",
    "ADMIN",
    "ANY",
    "DEFAULT_NAMESPACE",
    "ID",
    "ISSUER",
    "MAX_TOKEN",
    "PUBLIC",
    "REFRESH_TTL",
    "SERVICE",
    "Account",
    "Claims",
    "Resource",
    "Rule",
    "Tokens",
]

ID = "auth"
ISSUER = "micro"
"""The ``iss`` claim of every access token."""
DEFAULT_NAMESPACE = "micro"
PUBLIC = ""
"""Rule scope matching every caller, even one without an account."""
ANY = "*"
"""Rule scope matching every caller with an account."""
ADMIN = "admin"
"""The scope of administrators (the first account, ``admin``, has it)."""
SERVICE = "service"
"""The scope of service accounts (what the runtime gives the services it starts)."""
ACCESS_TTL = 900.0
"""Seconds an access token is valid (15 minutes)."""
REFRESH_TTL = 30 * 86400.0
"""Seconds a refresh token family lives without use (30 days)."""
MAX_TOKEN = 8192
"""Longest access token accepted, in characters; longer ones are refused unparsed."""


class Account(msgspec.Struct, frozen=True, omit_defaults=True):
    """A user or service that can log in. Never carries its secret."""

    id: str
    type: Literal["user", "service"] = "user"
    scopes: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    namespace: str = DEFAULT_NAMESPACE
    created: float = 0.0


class Resource(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a rule applies to: a ``service`` and an ``endpoint`` (``Handler.Method``).
    ``*`` matches anything; a trailing ``*`` matches a prefix (``Greeter.*``)."""

    service: str = "*"
    endpoint: str = "*"


class Rule(msgspec.Struct, frozen=True, omit_defaults=True):
    """Grant or deny callers with ``scope`` access to ``resource``."""

    id: str
    scope: str
    resource: Resource = msgspec.field(default_factory=Resource)
    access: Literal["grant", "deny"] = "grant"
    priority: int = 0


class Tokens(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a login or refresh returns. ``expiry`` is when ``access_token`` stops being
    valid (Unix seconds); ``refresh_token`` is empty when none was issued (API keys)."""

    access_token: str
    expiry: float
    refresh_token: str = ""
    token_type: str = "Bearer"


class Claims(msgspec.Struct, frozen=True, omit_defaults=True):
    """A verified access token: whose it is and until when."""

    sub: str  # the account id
    namespace: str
    type: str = "user"
    scopes: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    exp: float = 0.0
    iat: float = 0.0
    jti: str = ""

    def account(self) -> Account:
        """The account these claims describe (as of when the token was issued)."""
        kind: Literal["user", "service"] = "service" if self.type == "service" else "user"
        return Account(self.sub, kind, list(self.scopes), dict(self.metadata), self.namespace)
