"""Tokens kept in a :class:`~micro.store.Store`: SQLite locally, PostgreSQL in the cluster
profile, memory in tests — the same code over each.

Layout, in one table (``database``/``table``, default ``micro``/``tokens``), two records per
token, written together in one store transaction and expiring with the token (store ``ttl``)::

    <namespace>/t/<sha256 hex of the token>   -> TokenInfo          (consume, check)
    <namespace>/id/<id>                       -> TokenInfo + hash   (revoke, list)

The token itself is never stored, only its SHA-256. A fast hash is right here, unlike for
passwords: a password has little entropy, so a leaked hash can be guessed offline and needs
a slow, salted hash (argon2); a token is 256 uniformly random bits, so no guessing can
invert its hash whatever the hash's speed, and an unsalted hash lets a presented token be
found by key in one indexed read.

Exactly once: consume reads the token's record and deletes it in a transaction conditioned
on the etag it read. Of two concurrent consumers only one transaction finds that etag; the
other gets ``conflict`` from the store and answers ``not_found``, as for a used token.
Expiry is checked against the injected clock too, so a token is dead at ``expires`` even
before the store purges it.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping

import msgspec

from ..errors import MicroError, forbidden, internal, not_found
from ..store import DeleteOp, Record, Store, WriteOp
from . import DEFAULT_NAMESPACE, DEFAULT_TTL, ID, PREFIX, TokenInfo
from ._validate import (
    check_id,
    check_metadata,
    check_namespace,
    check_scope,
    check_token,
    check_ttl,
)

__all__ = ["UNKNOWN", "StoreTokens", "hash_token"]

UNKNOWN = "unknown, used or expired token"
"""The one answer for a token that cannot be used, whatever the reason."""

_ISSUE_ATTEMPTS = 3  # a fresh random id or hash already taken is (next to) impossible


class _Indexed(msgspec.Struct, frozen=True):
    """The value of ``<namespace>/id/<id>``: the token's info and the key of its record."""

    info: TokenInfo
    hash: str


_encode = msgspec.msgpack.Encoder().encode
_decode_info = msgspec.msgpack.Decoder(TokenInfo).decode
_decode_indexed = msgspec.msgpack.Decoder(_Indexed).decode


def hash_token(token: str) -> str:
    """The SHA-256 of ``token`` (UTF-8), in hex: the only form of a token that is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _token_key(namespace: str, digest: str) -> str:
    return f"{namespace}/t/{digest}"


def _id_key(namespace: str, id: str) -> str:
    return f"{namespace}/id/{id}"


class StoreTokens:
    """One-time tokens in ``store`` (which this object does not own: :meth:`close` leaves it
    open). ``clock`` gives Unix seconds, for ``created``/``expires`` and expiry checks."""

    def __init__(
        self,
        store: Store,
        *,
        database: str = "micro",
        table: str = "tokens",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._database = database
        self._table = table
        self._clock = clock

    async def issue(
        self,
        scope: str,
        *,
        ttl: float = DEFAULT_TTL,
        metadata: Mapping[str, str] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> tuple[str, TokenInfo]:
        """A new token for ``scope`` living ``ttl`` s, and its info."""
        check_scope(scope)
        seconds = check_ttl(ttl)
        meta = check_metadata(metadata)
        check_namespace(namespace)
        for _ in range(_ISSUE_ATTEMPTS):
            token = PREFIX + secrets.token_urlsafe(32)  # 32 bytes: 256 random bits
            created = self._clock()
            info = TokenInfo(secrets.token_hex(16), scope, meta, created, created + seconds)
            digest = hash_token(token)
            ops = [
                WriteOp(_token_key(namespace, digest), _encode(info), ttl=seconds, if_absent=True),
                WriteOp(
                    _id_key(namespace, info.id),
                    _encode(_Indexed(info, digest)),
                    ttl=seconds,
                    if_absent=True,
                ),
            ]
            try:
                await self._store.transact(self._database, self._table, ops)
            except MicroError as err:
                if err.code != "conflict":
                    raise
                continue  # the id (or hash) is taken: draw again
            return token, info
        # 128- and 256-bit random values colliding again and again: the randomness is broken
        raise internal(ID, f"no free token id after {_ISSUE_ATTEMPTS} attempts")

    async def consume(
        self, token: str, *, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> TokenInfo:
        """Use ``token`` up, exactly once; its info."""
        record, info = await self._find(token, scope, namespace)
        ops = [
            DeleteOp(record.key, etag=record.etag),
            DeleteOp(_id_key(namespace, info.id)),
        ]
        try:
            await self._store.transact(self._database, self._table, ops)
        except MicroError as err:
            if err.code in ("conflict", "not_found"):  # another consumer (or revoke) was first
                raise not_found(ID, UNKNOWN) from None
            raise
        return info

    async def check(
        self, token: str, *, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> TokenInfo:
        """The info of a usable ``token``, without using it up."""
        return (await self._find(token, scope, namespace))[1]

    async def revoke(self, id: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete the live token with public ``id``."""
        check_id(id)
        check_namespace(namespace)
        key = _id_key(namespace, id)
        gone = not_found(ID, f"no live token with id {id!r}")
        record = await self._read(key)
        if record is None:
            raise gone
        entry = _decode_indexed(record.value)
        if entry.info.expires <= self._clock():
            raise gone
        ops = [DeleteOp(key, etag=record.etag), DeleteOp(_token_key(namespace, entry.hash))]
        try:
            await self._store.transact(self._database, self._table, ops)
        except MicroError as err:
            if err.code in ("conflict", "not_found"):  # consumed or revoked meanwhile
                raise gone from None
            raise

    async def list(
        self, scope: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> builtins.list[TokenInfo]:
        """The live tokens of ``namespace`` (of ``scope`` if given), oldest first."""
        if scope is not None:
            check_scope(scope)
        check_namespace(namespace)
        records = await self._store.read(
            self._database, self._table, _id_key(namespace, ""), prefix=True
        )
        now = self._clock()
        infos = [_decode_indexed(r.value).info for r in records]
        live = [i for i in infos if i.expires > now and (scope is None or i.scope == scope)]
        live.sort(key=lambda i: (i.created, i.id))
        return live

    async def close(self) -> None:
        """Nothing to release: the store belongs to whoever gave it."""

    # -- helpers -------------------------------------------------------------------------------

    async def _read(self, key: str) -> Record | None:
        try:
            return (await self._store.read(self._database, self._table, key))[0]
        except MicroError as err:
            if err.code == "not_found":
                return None
            raise

    async def _find(
        self, token: str, scope: str | None, namespace: str
    ) -> tuple[Record, TokenInfo]:
        """The record and info of a usable token; ``not_found`` or ``forbidden`` otherwise."""
        check_token(token)  # before hashing: a huge string is refused, not hashed
        if scope is not None:
            check_scope(scope)
        check_namespace(namespace)
        record = await self._read(_token_key(namespace, hash_token(token)))
        if record is None:
            raise not_found(ID, UNKNOWN)
        info = _decode_info(record.value)
        if info.expires <= self._clock():
            raise not_found(ID, UNKNOWN)
        if scope is not None and info.scope != scope:
            raise forbidden(ID, f"the token is not valid for scope {scope!r}")
        return record, info
