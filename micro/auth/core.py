"""The auth service's state and logic: accounts, logins, refresh tokens, API keys, rules and
signing keys, all kept in a :class:`~micro.store.Store`.

Everything lives in one store table (``database``/``table``, ``micro``/``auth`` by default),
so the same code runs on SQLite locally and on PostgreSQL in a cluster, and several servers
sharing one database share accounts, sessions, keys and rules. Keys of the table::

    account/<namespace>/<id>    the account, the argon2id hash of its secret, a generation
    failures/<namespace>/<id>   failed logins (count, first, locked until), expiring
    family/<family id>          a refresh token family: account, sha256 of the current token
    key/<namespace>/<key id>    an API key: its description and the sha256 of its secret
    keyid/<key id>              the namespace of an API key (the key string does not name it)
    rule/<namespace>/<id>       a rule
    signing/ring                the signing keys (one record, so a rotation is one CAS write)

**Secrets are never stored.** Account secrets are hashed with argon2id (slow on purpose:
they may be human-chosen); refresh tokens and API keys carry 256 random bits, so a plain
sha256 of them is as good as a slow hash and costs nothing per call. A record dump leaks no
usable credential.

**Logins** take comparable time whether or not the account exists (an unknown account is
verified against a dummy hash) and fail with the same detail. After ``max_failures``
failures within ``failure_window`` seconds the account id is locked for ``lockout`` seconds
(``too_many_requests``, even with the right secret); a success resets the count. The count
is kept in the store, so every server sharing it enforces the same lock, and is kept for
unknown ids too, so locking does not reveal which accounts exist.

**Refresh tokens** are ``<family id>.<random>``: each refresh replaces the family's token
(a compare-and-set on the record's etag). Presenting any other token of the family — a
replayed, stolen token, or the loser of two concurrent refreshes of one token — deletes the
family: the session is over for thief and owner alike. A family also ends when its account is
deleted or its secret changes (the account's *generation* changes), and ``refresh_ttl``
seconds after its last use.

**Signing keys** are Ed25519 (:mod:`micro.auth.keys`); the first server to start creates
them, the others load them, and every server reloads them at most every
:data:`KEYS_RELOAD` seconds, so a rotation made by one is used by all.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import argon2
import msgspec
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import (
    MicroError,
    bad_request,
    conflict,
    not_found,
    too_many_requests,
    unauthorized,
    unavailable,
)
from ..store import DeleteOp, Op, Record, Store, WriteOp
from . import (
    ACCESS_TTL,
    ADMIN,
    ANY,
    DEFAULT_NAMESPACE,
    ID,
    ISSUER,
    PUBLIC,
    REFRESH_TTL,
    Account,
    Rule,
    Tokens,
)
from .keys import KeyRing, SigningKey, generate_key
from .messages import MAX_SECRET, ApiKey
from .rules import DEFAULT_RULES
from .verify import Verifier

__all__ = [
    "ADMIN_ACCOUNT",
    "INVALID_CREDENTIALS",
    "INVALID_KEY",
    "KEYS_RELOAD",
    "REUSED",
    "AuthCore",
]

ADMIN_ACCOUNT = "admin"
"""The id of the administrator account :meth:`AuthCore.start` creates."""
KEYS_RELOAD = 5.0
"""Seconds between reloads of the signing keys from the store."""
INVALID_CREDENTIALS = "invalid account id or secret"
INVALID_KEY = "invalid or expired API key"
INVALID_REFRESH = "invalid or expired refresh token"
REUSED = "refresh token reused; the session was revoked"
SESSION_ENDED = "the session ended: its account was deleted or its secret changed"

MIN_SECRET = 8
"""Shortest account secret accepted."""
MAX_SCOPES = 32
MAX_METADATA = 2048
"""Most characters of account metadata, keys and values together (it goes in every token)."""
MAX_RULE_FIELD = 256
MAX_PRIORITY = 1_000_000

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_RESOURCE = re.compile(r"[A-Za-z0-9_.*-]{1,256}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")
_KEY_PREFIX = "mk_"
_RING = "signing/ring"
_PRUNE_MARGIN = 60.0  # beyond the longest token lifetime: verifier leeway and clock skew
_RETRIES = 8

T = TypeVar("T")


class _StoredAccount(msgspec.Struct, frozen=True):
    account: Account
    hash: str  # argon2id hash of the secret
    gen: str  # changes with the secret; refresh families carry the one they were made with


class _Family(msgspec.Struct, frozen=True):
    account: str
    namespace: str
    gen: str
    digest: str  # sha256 (hex) of the random part of the family's current refresh token
    expires: float


class _Failures(msgspec.Struct, frozen=True):
    count: int
    first: float
    locked_until: float = 0.0


class _StoredKey(msgspec.Struct, frozen=True):
    key: ApiKey
    digest: str  # sha256 (hex) of the random part of the key


class _Ring(msgspec.Struct, frozen=True):
    keys: list[SigningKey]
    keep_for: float  # the longest lifetime of a token signed so far: how long retired keys stay


_encoder = msgspec.msgpack.Encoder()


def _decoder(tp: type[T]) -> msgspec.msgpack.Decoder[T]:
    return msgspec.msgpack.Decoder(tp)


_accounts = _decoder(_StoredAccount)
_families = _decoder(_Family)
_failures = _decoder(_Failures)
_keys = _decoder(_StoredKey)
_rings = _decoder(_Ring)
_rules = _decoder(Rule)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_namespace(namespace: str) -> None:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise bad_request(
            ID,
            f"namespace {namespace!r} is invalid: use 1 to 128 of A-Z a-z 0-9 _ . - "
            "(starting with a letter or digit)",
        )


def _check_id(id: str, field: str = "id") -> None:
    if not isinstance(id, str) or not _ID.fullmatch(id):
        raise bad_request(
            ID,
            f"{field} {id!r} is invalid: use 1 to 128 of A-Z a-z 0-9 _ . @ - "
            "(starting with a letter or digit)",
        )


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise bad_request(ID, f"secret must be {MIN_SECRET} to {MAX_SECRET} characters")


def _check_scopes(scopes: Sequence[str]) -> list[str]:
    if isinstance(scopes, str):
        raise bad_request(ID, "scopes must be a list of strings, not a string")
    out = list(dict.fromkeys(scopes))
    if len(out) > MAX_SCOPES:
        raise bad_request(ID, f"scopes: at most {MAX_SCOPES}, not {len(out)}")
    for scope in out:
        if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
            raise bad_request(
                ID,
                f"scopes: {scope!r} is invalid: use 1 to 64 of A-Z a-z 0-9 _ . : - "
                "(starting with a letter or digit)",
            )
    return out


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(metadata or {})
    size = 0
    for key, value in out.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise bad_request(ID, "metadata must map non-empty strings to strings")
        size += len(key) + len(value)
    if size > MAX_METADATA:
        raise bad_request(ID, f"metadata: at most {MAX_METADATA} characters in all, not {size}")
    return out


def _check_ttl(ttl: float, field: str = "ttl") -> float:
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise bad_request(ID, f"{field} must be a positive number of seconds, not {ttl!r}")
    return float(ttl)


def _check_rule(rule: Rule) -> None:
    if not isinstance(rule, Rule):
        raise bad_request(ID, "rule must be a Rule")
    _check_id(rule.id, "rule id")
    if rule.scope not in (PUBLIC, ANY) and not _SCOPE.fullmatch(rule.scope):
        raise bad_request(
            ID,
            f"rule scope {rule.scope!r} is invalid: '' (public), '*' (any account) or a scope name",
        )
    for field, value in (("service", rule.resource.service), ("endpoint", rule.resource.endpoint)):
        if not isinstance(value, str) or not _RESOURCE.fullmatch(value):
            raise bad_request(
                ID,
                f"rule resource {field} {value!r} is invalid: use 1 to "
                f"{MAX_RULE_FIELD} of A-Z a-z 0-9 _ . - *",
            )
    if rule.access not in ("grant", "deny"):
        raise bad_request(ID, f"rule access must be 'grant' or 'deny', not {rule.access!r}")
    if (
        isinstance(rule.priority, bool)
        or not isinstance(rule.priority, int)
        or abs(rule.priority) > MAX_PRIORITY
    ):
        raise bad_request(ID, f"rule priority must be an integer within ±{MAX_PRIORITY}")


def _account_key(namespace: str, id: str) -> str:
    return f"account/{namespace}/{id}"


def _failures_key(namespace: str, id: str) -> str:
    return f"failures/{namespace}/{id}"


def _family_key(family: str) -> str:
    return f"family/{family}"


def _key_key(namespace: str, key_id: str) -> str:
    return f"key/{namespace}/{key_id}"


def _keyid_key(key_id: str) -> str:
    return f"keyid/{key_id}"


def _rule_key(namespace: str, id: str) -> str:
    return f"rule/{namespace}/{id}"


def _split_refresh(token: str) -> tuple[str, str] | None:
    """``(family id, secret)`` of a well-formed refresh token, else ``None``."""
    if not isinstance(token, str) or len(token) > 200:
        return None
    family, dot, secret = token.partition(".")
    if not dot or not _URLSAFE.fullmatch(family) or not _URLSAFE.fullmatch(secret):
        return None
    return family, secret


def _split_key(api_key: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed API key, else ``None``."""
    if not isinstance(api_key, str) or len(api_key) > 200 or not api_key.startswith(_KEY_PREFIX):
        return None
    key_id, sep, secret = api_key[len(_KEY_PREFIX) :].partition("_")
    if not sep or not _KEY_ID.fullmatch(key_id) or not _URLSAFE.fullmatch(secret):
        return None
    return key_id, secret


def _is_conflict(exc: MicroError) -> bool:
    return exc.code == "conflict"


class AuthCore:
    """Accounts, logins, refresh token families, API keys, rules and signing keys kept in
    ``store`` (``database``/``table``). ``clock`` must be the store's clock (expiries are
    compared with both). ``hasher`` defaults to argon2-cffi's argon2id defaults."""

    def __init__(
        self,
        store: Store,
        *,
        database: str = "micro",
        table: str = "auth",
        clock: Callable[[], float] = time.time,
        access_ttl: float = ACCESS_TTL,
        refresh_ttl: float = REFRESH_TTL,
        max_failures: int = 5,
        failure_window: float = 300.0,
        lockout: float = 900.0,
        hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        for name, value in (
            ("access_ttl", access_ttl),
            ("refresh_ttl", refresh_ttl),
            ("failure_window", failure_window),
            ("lockout", lockout),
        ):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        self._store = store
        self._db = database
        self._table = table
        self._clock = clock
        self.access_ttl = float(access_ttl)
        self.refresh_ttl = float(refresh_ttl)
        self.max_failures = max_failures
        self.failure_window = float(failure_window)
        self.lockout = float(lockout)
        self._hasher = hasher if hasher is not None else argon2.PasswordHasher()
        self._ring: KeyRing | None = None
        self._keep_for = self.access_ttl
        self._loaded_at = -math.inf
        self._ring_lock = asyncio.Lock()
        self._verifier: Verifier | None = None
        self._dummy: str | None = None

    # -- store helpers -------------------------------------------------------------------------

    async def _get(self, key: str) -> Record | None:
        try:
            return (await self._store.read(self._db, self._table, key))[0]
        except MicroError as exc:
            if exc.code == "not_found":
                return None
            raise

    async def _scan(self, prefix: str) -> list[Record]:
        return await self._store.read(self._db, self._table, prefix, prefix=True)

    async def _write(
        self,
        key: str,
        value: msgspec.Struct | bytes,
        *,
        ttl: float | None = None,
        etag: str | None = None,
        if_absent: bool = False,
    ) -> Record:
        data = value if isinstance(value, bytes) else _encoder.encode(value)
        return await self._store.write(
            self._db, self._table, key, data, ttl=ttl, etag=etag, if_absent=if_absent
        )

    async def _delete(self, key: str) -> None:
        await self._store.delete(self._db, self._table, key)

    async def _transact(self, ops: Sequence[Op]) -> None:
        for start in range(0, len(ops), 500):
            await self._store.transact(self._db, self._table, ops[start : start + 500])

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> str | None:
        """Load (or create) the signing keys, create the default rules of namespace
        ``micro`` when it has none, and create the account ``admin`` when it does not exist.
        Returns the admin's generated password when this call created it, else ``None``.
        Servers starting together on one store agree: exactly one creates each thing."""
        async with self._ring_lock:
            await self._reload_ring()
        if self._dummy is None:
            self._dummy = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(18))
        await self._default_rules()
        return await self._create_admin()

    async def close(self) -> None:
        """Forget the loaded keys (the store is the caller's to close)."""
        self._ring = None
        self._loaded_at = -math.inf

    async def _default_rules(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Give ``namespace`` the default rules unless it has rules already (a namespace
        gets them with its first account, so its services admit its admins and services)."""
        prefix = _rule_key(namespace, "")
        if await self._store.list_keys(self._db, self._table, prefix=prefix, limit=1):
            return
        ops: list[Op] = [
            WriteOp(_rule_key(namespace, r.id), _encoder.encode(r), if_absent=True)
            for r in DEFAULT_RULES
        ]
        try:
            await self._store.transact(self._db, self._table, ops)
        except MicroError as exc:
            if not _is_conflict(exc):  # another server created them first
                raise

    async def _create_admin(self) -> str | None:
        key = _account_key(DEFAULT_NAMESPACE, ADMIN_ACCOUNT)
        if await self._get(key) is not None:
            return None
        password = secrets.token_urlsafe(18)
        stored = _StoredAccount(
            Account(ADMIN_ACCOUNT, "user", [ADMIN], {}, DEFAULT_NAMESPACE, self._clock()),
            await asyncio.to_thread(self._hasher.hash, password),
            secrets.token_urlsafe(12),
        )
        try:
            await self._write(key, stored, if_absent=True)
        except MicroError as exc:
            if _is_conflict(exc):  # another server created it first
                return None
            raise
        return password

    # -- signing keys --------------------------------------------------------------------------

    def _use_ring(self, record: Record) -> KeyRing:
        stored = _rings.decode(record.value)
        ring = KeyRing(stored.keys, clock=self._clock)
        self._ring = ring
        self._keep_for = max(self.access_ttl, stored.keep_for)
        self._loaded_at = self._clock()
        if self._verifier is not None:
            self._verifier.update(ring.jwks())
        return ring

    async def _reload_ring(self) -> KeyRing:
        """Load the key ring from the store, creating it if absent (call with the lock)."""
        for _ in range(_RETRIES):
            record = await self._get(_RING)
            if record is None:
                fresh = _Ring([generate_key(self._clock())], self.access_ttl)
                try:
                    record = await self._write(_RING, fresh, if_absent=True)
                except MicroError as exc:
                    if _is_conflict(exc):  # another server created it: load theirs
                        continue
                    raise
            return self._use_ring(record)
        raise unavailable(ID, "cannot load the signing keys: the store keeps changing them")

    async def _keyring(self) -> KeyRing:
        """The key ring, reloaded when older than :data:`KEYS_RELOAD` seconds."""
        ring = self._ring
        if ring is not None and self._clock() - self._loaded_at < KEYS_RELOAD:
            return ring
        async with self._ring_lock:
            ring = self._ring
            if ring is not None and self._clock() - self._loaded_at < KEYS_RELOAD:
                return ring
            return await self._reload_ring()

    async def _update_ring(self, change: Callable[[_Ring], _Ring | None]) -> KeyRing:
        """Apply ``change`` to the stored ring with a compare-and-set, retrying on conflicts
        (``change`` returning ``None``: nothing to write)."""
        async with self._ring_lock:
            for _ in range(_RETRIES):
                record = await self._get(_RING)
                if record is None:
                    await self._reload_ring()
                    continue
                updated = change(_rings.decode(record.value))
                if updated is None:
                    return self._use_ring(record)
                try:
                    written = await self._write(_RING, updated, etag=record.etag)
                except MicroError as exc:
                    if _is_conflict(exc):
                        continue
                    raise
                return self._use_ring(written)
        raise unavailable(ID, "cannot update the signing keys: the store keeps changing them")

    async def jwks(self) -> dict[str, Any]:
        """The public signing keys (a JWKS), reloaded from the store at most every
        :data:`KEYS_RELOAD` seconds."""
        return (await self._keyring()).jwks()

    async def rotate_keys(self) -> str:
        """Make a new signing key (the previous one is retired: it still verifies) and drop
        keys retired longer ago than the longest token lifetime. Returns the new ``kid``."""
        new_kid = ""

        def rotate(stored: _Ring) -> _Ring:
            nonlocal new_kid
            ring = KeyRing(stored.keys, clock=self._clock)
            new_kid = ring.rotate().kid
            ring.prune(max(self.access_ttl, stored.keep_for) + _PRUNE_MARGIN)
            return _Ring(ring.keys, stored.keep_for)

        await self._update_ring(rotate)
        return new_kid

    async def _cover(self, ttl: float) -> None:
        """Make sure retired keys are kept at least ``ttl`` seconds (a long-lived token)."""
        if ttl <= self._keep_for:
            return

        def extend(stored: _Ring) -> _Ring | None:
            return None if stored.keep_for >= ttl else _Ring(stored.keys, ttl)

        await self._update_ring(extend)

    def verifier(self) -> Verifier:
        """A :class:`~micro.auth.verify.Verifier` on this core's keys, kept up to date with
        every reload and rotation (the same instance on every call)."""
        if self._verifier is None:
            jwks = self._ring.jwks() if self._ring is not None else None
            self._verifier = Verifier(jwks, fetch=self.jwks, clock=self._clock)
        return self._verifier

    async def _access(self, account: Account, ttl: float) -> tuple[str, float]:
        ring = await self._keyring()
        now = self._clock()
        expiry = now + ttl
        claims = {
            "iss": ISSUER,
            "sub": account.id,
            "namespace": account.namespace,
            "type": account.type,
            "scopes": list(account.scopes),
            "metadata": dict(account.metadata),
            "iat": now,
            "nbf": now,
            "exp": expiry,
            "jti": secrets.token_urlsafe(12),
        }
        return ring.sign(claims), expiry

    # -- accounts ------------------------------------------------------------------------------

    async def _stored(self, namespace: str, id: str) -> tuple[_StoredAccount, Record] | None:
        record = await self._get(_account_key(namespace, id))
        return None if record is None else (_accounts.decode(record.value), record)

    async def create_account(
        self,
        id: str,
        *,
        secret: str | None = None,
        type: Literal["user", "service"] = "user",
        scopes: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> tuple[Account, str]:
        """Create an account; returns it and its secret (generated when ``secret`` is
        ``None``: the only time it can be seen). ``conflict`` if ``id`` exists in
        ``namespace``; ``bad_request`` naming the field for invalid input."""
        _check_id(id)
        _check_namespace(namespace)
        if type not in ("user", "service"):
            raise bad_request(ID, f"type must be 'user' or 'service', not {type!r}")
        checked_scopes = _check_scopes(scopes)
        checked_metadata = _check_metadata(metadata)
        if secret is None:
            secret = secrets.token_urlsafe(24)
        else:
            _check_secret(secret)
        key = _account_key(namespace, id)
        exists = conflict(ID, f"account {id!r} already exists in namespace {namespace!r}")
        if await self._get(key) is not None:  # before the (slow) hash
            raise exists
        account = Account(id, type, checked_scopes, checked_metadata, namespace, self._clock())
        hashed = await asyncio.to_thread(self._hasher.hash, secret)
        try:
            await self._write(
                key, _StoredAccount(account, hashed, secrets.token_urlsafe(12)), if_absent=True
            )
        except MicroError as exc:
            if _is_conflict(exc):
                raise exists from None
            raise
        if namespace != DEFAULT_NAMESPACE:
            await self._default_rules(namespace)
        return account, secret

    async def get_account(self, id: str, namespace: str = DEFAULT_NAMESPACE) -> Account:
        """The account ``id`` of ``namespace``; ``not_found`` if absent."""
        _check_id(id)
        _check_namespace(namespace)
        found = await self._stored(namespace, id)
        if found is None:
            raise not_found(ID, f"account {id!r} not found in namespace {namespace!r}")
        return found[0].account

    async def list_accounts(self, namespace: str = DEFAULT_NAMESPACE) -> list[Account]:
        """The accounts of ``namespace``, by id."""
        _check_namespace(namespace)
        records = await self._scan(_account_key(namespace, ""))
        return [_accounts.decode(r.value).account for r in records]

    async def delete_account(self, id: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete an account and its API keys; its sessions can no longer be refreshed.
        ``not_found`` if absent."""
        await self.get_account(id, namespace)
        # The account first: from then on its keys and families are refused anyway.
        await self._delete(_account_key(namespace, id))
        ops: list[Op] = [DeleteOp(_failures_key(namespace, id))]
        for key in await self.list_keys(namespace, id):
            ops += [DeleteOp(_key_key(namespace, key.id)), DeleteOp(_keyid_key(key.id))]
        await self._transact(ops)

    async def set_secret(self, id: str, secret: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Replace an account's secret. Its refresh token families end (a new generation)."""
        _check_id(id)
        _check_namespace(namespace)
        _check_secret(secret)
        hashed = await asyncio.to_thread(self._hasher.hash, secret)
        for _ in range(_RETRIES):
            found = await self._stored(namespace, id)
            if found is None:
                raise not_found(ID, f"account {id!r} not found in namespace {namespace!r}")
            stored, record = found
            updated = _StoredAccount(stored.account, hashed, secrets.token_urlsafe(12))
            try:
                await self._write(record.key, updated, etag=record.etag)
            except MicroError as exc:
                if _is_conflict(exc):
                    continue
                raise
            return
        raise conflict(ID, f"account {id!r} keeps changing; try again")

    # -- logins --------------------------------------------------------------------------------

    async def _verify_secret(self, hashed: str | None, secret: str) -> bool:
        if hashed is None:  # unknown account: spend the same time on a dummy hash
            if self._dummy is None:
                self._dummy = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(18))
            hashed = self._dummy
        try:
            return await asyncio.to_thread(self._hasher.verify, hashed, secret)
        except (VerificationError, InvalidHashError):
            return False

    async def login(self, id: str, secret: str, namespace: str = DEFAULT_NAMESPACE) -> Tokens:
        """Log in with an account id and secret: an access token and a refresh token.
        ``unauthorized`` for an unknown account or a wrong secret (the same detail);
        ``too_many_requests`` while the id is locked after too many failures."""
        valid = (
            isinstance(id, str)
            and _ID.fullmatch(id) is not None
            and isinstance(namespace, str)
            and _NAMESPACE.fullmatch(namespace) is not None
            and isinstance(secret, str)
            and 0 < len(secret) <= MAX_SECRET
        )
        if not valid:
            await self._verify_secret(None, "x")
            raise unauthorized(ID, INVALID_CREDENTIALS)
        failures_key = _failures_key(namespace, id)
        failures = await self._get(failures_key)
        if failures is not None:
            locked_until = _failures.decode(failures.value).locked_until
            now = self._clock()
            if locked_until > now:
                seconds = math.ceil(locked_until - now)
                raise too_many_requests(
                    ID, f"too many failed logins for {id}: locked for {seconds} s"
                )
        found = await self._stored(namespace, id)
        ok = await self._verify_secret(found[0].hash if found else None, secret)
        if not ok or found is None:
            await self._count_failure(failures_key)
            raise unauthorized(ID, INVALID_CREDENTIALS)
        if failures is not None:
            await self._delete(failures_key)
        return await self._session(found[0])

    async def _count_failure(self, key: str) -> None:
        for _ in range(_RETRIES):
            now = self._clock()
            record = await self._get(key)
            current = _failures.decode(record.value) if record is not None else None
            if current is not None and current.locked_until > now:
                return  # locked meanwhile by a concurrent failure
            if (
                current is None
                or current.locked_until
                or now - current.first >= self.failure_window
            ):
                updated = _Failures(1, now)
            else:
                updated = _Failures(current.count + 1, current.first)
            if updated.count >= self.max_failures:
                updated = _Failures(updated.count, updated.first, now + self.lockout)
            ttl = max(self.failure_window, updated.locked_until - now) + 1.0
            try:
                await self._write(
                    key,
                    updated,
                    ttl=ttl,
                    etag=record.etag if record is not None else None,
                    if_absent=record is None,
                )
            except MicroError as exc:
                if _is_conflict(exc):
                    continue
                raise
            return

    async def _session(self, stored: _StoredAccount) -> Tokens:
        access, expiry = await self._access(stored.account, self.access_ttl)
        refresh = await self._new_family(stored)
        return Tokens(access, expiry, refresh)

    async def _new_family(self, stored: _StoredAccount) -> str:
        family = secrets.token_urlsafe(16)
        secret = secrets.token_urlsafe(32)
        account = stored.account
        record = _Family(
            account.id,
            account.namespace,
            stored.gen,
            _digest(secret),
            self._clock() + self.refresh_ttl,
        )
        await self._write(_family_key(family), record, ttl=self.refresh_ttl, if_absent=True)
        return f"{family}.{secret}"

    async def refresh(self, refresh_token: str) -> Tokens:
        """A new access token and a new refresh token for the current refresh token of a
        family. Any other token of a known family (a replay, or the loser of two concurrent
        refreshes) revokes the family: ``unauthorized`` with :data:`REUSED`."""
        parts = _split_refresh(refresh_token)
        if parts is None:
            raise unauthorized(ID, INVALID_REFRESH)
        family_id, secret = parts
        key = _family_key(family_id)
        record = await self._get(key)
        if record is None:
            raise unauthorized(ID, INVALID_REFRESH)
        family = _families.decode(record.value)
        now = self._clock()
        if family.expires <= now:
            await self._delete(key)
            raise unauthorized(ID, INVALID_REFRESH)
        if not hmac.compare_digest(family.digest, _digest(secret)):
            await self._delete(key)
            raise unauthorized(ID, REUSED)
        found = await self._stored(family.namespace, family.account)
        if found is None or found[0].gen != family.gen:
            await self._delete(key)
            raise unauthorized(ID, SESSION_ENDED)
        new_secret = secrets.token_urlsafe(32)
        updated = msgspec.structs.replace(
            family, digest=_digest(new_secret), expires=now + self.refresh_ttl
        )
        try:
            await self._write(key, updated, ttl=self.refresh_ttl, etag=record.etag)
        except MicroError as exc:
            if _is_conflict(exc):  # refreshed (or revoked) concurrently: a second use
                await self._delete(key)
                raise unauthorized(ID, REUSED) from None
            raise
        access, expiry = await self._access(found[0].account, self.access_ttl)
        return Tokens(access, expiry, f"{family_id}.{new_secret}")

    async def session_owner(self, refresh_token: str) -> tuple[str, str] | None:
        """``(namespace, account id)`` of the live family of ``refresh_token``, if any."""
        parts = _split_refresh(refresh_token)
        if parts is None:
            return None
        record = await self._get(_family_key(parts[0]))
        if record is None:
            return None
        family = _families.decode(record.value)
        return family.namespace, family.account

    async def revoke(self, refresh_token: str) -> None:
        """Log out: end the session (family) of ``refresh_token``. Unknown tokens are
        ignored."""
        parts = _split_refresh(refresh_token)
        if parts is not None:
            await self._delete(_family_key(parts[0]))

    async def issue(self, account: Account, *, ttl: float | None = None) -> Tokens:
        """An access token (valid ``ttl`` s, :attr:`access_ttl` by default) for ``account``
        without its secret — for the server itself — and, when the account is stored, a
        refresh token of a new family."""
        lifetime = self.access_ttl if ttl is None else _check_ttl(ttl)
        _check_id(account.id)
        _check_namespace(account.namespace)
        await self._cover(lifetime)
        access, expiry = await self._access(account, lifetime)
        found = await self._stored(account.namespace, account.id)
        refresh = await self._new_family(found[0]) if found is not None else ""
        return Tokens(access, expiry, refresh)

    # -- API keys ------------------------------------------------------------------------------

    async def create_key(
        self,
        account_id: str,
        *,
        name: str = "",
        ttl: float | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> tuple[ApiKey, str]:
        """A new API key of an account (expiring after ``ttl`` s, or never). Returns its
        description and the key string ``mk_<key id>_<secret>`` (shown only now)."""
        if not isinstance(name, str) or len(name) > 256:
            raise bad_request(ID, "name must be a string of at most 256 characters")
        lifetime = None if ttl is None else _check_ttl(ttl)
        await self.get_account(account_id, namespace)
        key_id = secrets.token_hex(8)
        # 256 random bits: guessing is hopeless, so a fast sha256 is a safe way to store it
        # (unlike a human-chosen password, which needs a slow hash such as argon2id).
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        key = ApiKey(key_id, account_id, namespace, name, now, now + lifetime if lifetime else 0.0)
        stored = _encoder.encode(_StoredKey(key, _digest(secret)))
        await self._store.transact(
            self._db,
            self._table,
            [
                WriteOp(_key_key(namespace, key_id), stored, ttl=lifetime, if_absent=True),
                WriteOp(_keyid_key(key_id), namespace.encode(), ttl=lifetime, if_absent=True),
            ],
        )
        return key, f"{_KEY_PREFIX}{key_id}_{secret}"

    async def get_key(self, key_id: str, namespace: str = DEFAULT_NAMESPACE) -> ApiKey:
        """The description of API key ``key_id``; ``not_found`` if absent or expired."""
        _check_namespace(namespace)
        record = await self._get(_key_key(namespace, key_id)) if _KEY_ID.fullmatch(key_id) else None
        if record is None:
            raise not_found(ID, f"API key {key_id!r} not found in namespace {namespace!r}")
        return _keys.decode(record.value).key

    async def list_keys(
        self, namespace: str = DEFAULT_NAMESPACE, account_id: str | None = None
    ) -> list[ApiKey]:
        """The API keys of ``namespace`` (of one account when ``account_id`` is given)."""
        _check_namespace(namespace)
        keys = [_keys.decode(r.value).key for r in await self._scan(_key_key(namespace, ""))]
        return [k for k in keys if account_id is None or k.account == account_id]

    async def delete_key(self, key_id: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete an API key; ``not_found`` if absent."""
        await self.get_key(key_id, namespace)
        await self._transact([DeleteOp(_key_key(namespace, key_id)), DeleteOp(_keyid_key(key_id))])

    async def exchange(self, api_key: str) -> Tokens:
        """An access token (no refresh token) for an API key; ``unauthorized`` if the key is
        malformed, unknown, deleted or expired, or its account is gone. The token does not
        outlive the key."""
        parts = _split_key(api_key)
        if parts is None:
            raise unauthorized(ID, INVALID_KEY)
        key_id, secret = parts
        index = await self._get(_keyid_key(key_id))
        if index is None:
            raise unauthorized(ID, INVALID_KEY)
        record = await self._get(_key_key(index.value.decode(), key_id))
        if record is None:
            raise unauthorized(ID, INVALID_KEY)
        stored = _keys.decode(record.value)
        now = self._clock()
        key = stored.key
        if not hmac.compare_digest(stored.digest, _digest(secret)) or (
            key.expires and key.expires <= now
        ):
            raise unauthorized(ID, INVALID_KEY)
        found = await self._stored(key.namespace, key.account)
        if found is None:
            raise unauthorized(ID, INVALID_KEY)
        ttl = min(self.access_ttl, key.expires - now) if key.expires else self.access_ttl
        access, expiry = await self._access(found[0].account, ttl)
        return Tokens(access, expiry)

    # -- rules ---------------------------------------------------------------------------------

    async def create_rule(self, rule: Rule, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Add a rule to ``namespace``; ``conflict`` if its id exists there."""
        _check_namespace(namespace)
        _check_rule(rule)
        try:
            await self._write(_rule_key(namespace, rule.id), rule, if_absent=True)
        except MicroError as exc:
            if _is_conflict(exc):
                raise conflict(
                    ID, f"rule {rule.id!r} already exists in namespace {namespace!r}"
                ) from None
            raise

    async def delete_rule(self, id: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete a rule; ``not_found`` if absent."""
        _check_id(id, "rule id")
        _check_namespace(namespace)
        key = _rule_key(namespace, id)
        if await self._get(key) is None:
            raise not_found(ID, f"rule {id!r} not found in namespace {namespace!r}")
        await self._delete(key)

    async def list_rules(self, namespace: str = DEFAULT_NAMESPACE) -> list[Rule]:
        """The rules of ``namespace``, by id."""
        _check_namespace(namespace)
        return [_rules.decode(r.value) for r in await self._scan(_rule_key(namespace, ""))]
