"""Token: random, opaque, one-time tokens (invitations, e-mail links, password resets).

**Issue.** :meth:`Tokens.issue` makes a token string ``"mt_" + 43 url-safe characters``
(256 random bits from :mod:`secrets`) and returns it *once*, with its :class:`TokenInfo`:
a public ``id`` (a random handle, unrelated to the token, to revoke and list it), the
``scope`` it is good for, string ``metadata``, and when it was ``created`` and ``expires``
(Unix seconds of the backend's clock, ``expires = created + ttl``).

**Consume exactly once.** :meth:`Tokens.consume` returns the token's info and deletes it
atomically: of any number of concurrent consumers of one token, exactly one wins, every
other one gets ``not_found("unknown, used or expired token")`` — the same answer as for a
token that never existed, was revoked or expired, so the answer leaks nothing. Given a
``scope`` that is not the token's, it answers ``forbidden`` and the token is *not*
consumed. :meth:`Tokens.check` answers the same without consuming.

**Revoke and list** by id: :meth:`Tokens.revoke` (``not_found`` if there is no live token
with that id), :meth:`Tokens.list` the live tokens of a namespace, of one scope if given,
oldest first. Neither ever shows a token string.

**Stored hashed.** Backends keep the SHA-256 of the token, never the token: a copy of the
database holds nothing that can be presented as a token.

**Namespaces** keep tokens apart: a token issued in one namespace is unknown in every other.

Limits (``bad_request`` naming the field): ``scope`` 1 to 256 characters without control
characters; ``ttl`` a finite number of seconds, > 0 and at most one year; ``metadata`` at
most 16 KiB (UTF-8 bytes of all its keys and values); a presented ``token`` 1 to 256
characters (longer ones are refused before hashing); ``namespace`` and ``id`` match
``[A-Za-z0-9_.-]{1,128}``.

Backends: :mod:`micro.token.store` (over any :class:`~micro.store.Store`: SQLite locally,
PostgreSQL in the cluster profile) and :mod:`micro.token.rpc` (the client of the ``token``
service, :mod:`micro.token.handler`).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import msgspec

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_TTL",
    "ID",
    "MAX_METADATA",
    "MAX_SCOPE",
    "MAX_TOKEN",
    "MAX_TTL",
    "PREFIX",
    "TokenInfo",
    "Tokens",
]

ID = "token"
"""The service name, and the ``id`` of the errors raised here."""
PREFIX = "mt_"
"""Every token string starts with this (easy to spot in logs and secret scanners)."""
DEFAULT_NAMESPACE = "micro"
DEFAULT_TTL = 3600.0
"""Seconds a token lives when no ``ttl`` is given."""
MAX_TTL = 365 * 24 * 3600.0
"""Longest ``ttl``: one year."""
MAX_SCOPE = 256
"""Longest scope, in characters."""
MAX_METADATA = 16 * 1024
"""Largest metadata: the UTF-8 bytes of all its keys and values together."""
MAX_TOKEN = 256
"""Longest token string accepted by consume/check (issued ones are 46 characters)."""


class TokenInfo(msgspec.Struct, frozen=True):
    """What is known about a token, never the token itself. ``id`` is a public handle;
    ``created`` and ``expires`` are Unix seconds."""

    id: str
    scope: str
    metadata: dict[str, str]
    created: float
    expires: float


@runtime_checkable
class Tokens(Protocol):
    """What every token backend provides."""

    async def issue(
        self,
        scope: str,
        *,
        ttl: float = DEFAULT_TTL,
        metadata: Mapping[str, str] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> tuple[str, TokenInfo]:
        """A new token for ``scope`` living ``ttl`` s: the token string (shown only now)
        and its info."""
        ...

    async def consume(
        self, token: str, *, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> TokenInfo:
        """Use ``token`` up: its info, exactly once. ``not_found`` for an unknown, used,
        revoked or expired token; ``forbidden`` (not consumed) if ``scope`` differs."""
        ...

    async def check(
        self, token: str, *, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> TokenInfo:
        """Like :meth:`consume` without using the token up."""
        ...

    async def revoke(self, id: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete the token with public ``id``; ``not_found`` if there is no live one."""
        ...

    async def list(
        self, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> builtins.list[TokenInfo]:
        """The live tokens of ``namespace`` (of ``scope`` if given), oldest first."""
        ...

    async def close(self) -> None:
        """Release what the backend holds (not a store it was given)."""
        ...
