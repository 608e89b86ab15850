"""The ``auth`` RPC service: a thin layer over :class:`~micro.auth.core.AuthCore` that also
checks who may do what.

The rules (applied by the auth middleware before a handler runs) are the first line; this
handler is the second, and holds whatever the rules allow. The caller is
``ctx.account`` (verified claims, ``None`` when anonymous):

- ``Auth.Token``, ``Auth.Exchange`` and ``Auth.Jwks`` are public (logging in needs no token);
- every other endpoint needs an account (``unauthorized`` without one);
- an account acts only in its own namespace, except an administrator of the default
  namespace (``micro``), who may act in any (``forbidden`` otherwise);
- managing accounts and rules needs the :data:`~micro.auth.ADMIN` scope; listing rules is
  also open to :data:`~micro.auth.SERVICE` accounts (every service loads the rules it
  enforces); rotating the signing keys needs an administrator of ``micro`` (they are global);
- any account may inspect a token, revoke its own sessions, and create, list and delete its
  own API keys.

An empty ``namespace`` in a request means the caller's own.
"""

from __future__ import annotations

from ..context import Context
from ..errors import bad_request, forbidden, unauthorized
from ..service.endpoint import public
from . import ADMIN, DEFAULT_NAMESPACE, ID, SERVICE, Claims, Tokens
from .core import AuthCore
from .messages import (
    AccountRequest,
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

__all__ = ["Auth", "AuthHandler"]


def _caller(ctx: Context) -> Claims:
    """The verified caller; ``unauthorized`` for an anonymous call."""
    account = ctx.account
    if account is None:
        raise unauthorized(ID, "this endpoint needs an account: log in first")
    return account


def _namespace(caller: Claims, namespace: str) -> str:
    """The namespace a request acts in (empty: the caller's), if the caller may act there."""
    target = namespace or caller.namespace
    if target != caller.namespace and not (
        caller.namespace == DEFAULT_NAMESPACE and ADMIN in caller.scopes
    ):
        raise forbidden(
            ID,
            f"account {caller.sub!r} of namespace {caller.namespace!r} may not act in "
            f"namespace {target!r}",
        )
    return target


def _admin(caller: Claims, namespace: str, what: str) -> str:
    """The namespace, if the caller administers it."""
    target = _namespace(caller, namespace)
    if ADMIN not in caller.scopes:
        raise forbidden(ID, f"{what} in namespace {target!r} needs the {ADMIN!r} scope")
    return target


def _is_admin(caller: Claims, namespace: str) -> bool:
    return ADMIN in caller.scopes and (
        caller.namespace == namespace or caller.namespace == DEFAULT_NAMESPACE
    )


class Auth:
    """Serves ``Auth.Token``, ``Exchange``, ``Jwks``, ``Revoke``, ``Inspect``, ``Generate``,
    ``List``, ``Delete``, ``SetSecret``, ``CreateKey``, ``ListKeys``, ``DeleteKey``,
    ``CreateRule``, ``DeleteRule``, ``ListRules`` and ``RotateKeys``."""

    def __init__(self, core: AuthCore) -> None:
        self._core = core

    # -- public --------------------------------------------------------------------------------

    @public
    async def token(self, ctx: Context, req: TokenRequest) -> Tokens:
        """Log in (``id`` + ``secret``) or refresh (``refresh_token``)."""
        if req.refresh_token:
            return await self._core.refresh(req.refresh_token)
        if not req.id:
            raise bad_request(ID, "give either id and secret, or refresh_token")
        return await self._core.login(req.id, req.secret, req.namespace or DEFAULT_NAMESPACE)

    @public
    async def exchange(self, ctx: Context, req: ExchangeRequest) -> Tokens:
        """An access token for an API key."""
        return await self._core.exchange(req.api_key)

    @public
    async def jwks(self, ctx: Context, req: Empty) -> JwksResponse:
        """The public keys that verify access tokens."""
        return JwksResponse((await self._core.jwks())["keys"])

    # -- any account ---------------------------------------------------------------------------

    async def revoke(self, ctx: Context, req: RevokeRequest) -> Empty:
        """Log out: end the session of a refresh token (one's own, or as its namespace's
        administrator)."""
        caller = _caller(ctx)
        owner = await self._core.session_owner(req.refresh_token)
        if owner is None:
            return Empty()  # nothing to end: unknown, expired or already revoked
        namespace, account = owner
        if (namespace, account) != (caller.namespace, caller.sub) and not _is_admin(
            caller, namespace
        ):
            raise forbidden(ID, f"account {caller.sub!r} may not revoke another account's session")
        await self._core.revoke(req.refresh_token)
        return Empty()

    async def inspect(self, ctx: Context, req: InspectRequest) -> Claims:
        """Verify an access token and return its claims."""
        _caller(ctx)
        return await self._core.verifier().verify_async(req.token)

    async def create_key(self, ctx: Context, req: CreateKeyRequest) -> CreateKeyResponse:
        """An API key for the caller (or, as administrator, for an account of the namespace)."""
        caller = _caller(ctx)
        namespace = _namespace(caller, req.namespace)
        account = req.account or caller.sub
        if (namespace, account) != (caller.namespace, caller.sub) and not _is_admin(
            caller, namespace
        ):
            raise forbidden(ID, f"creating API keys of {account!r} needs the {ADMIN!r} scope")
        key, secret = await self._core.create_key(
            account, name=req.name, ttl=req.ttl, namespace=namespace
        )
        return CreateKeyResponse(key, secret)

    async def list_keys(self, ctx: Context, req: ListKeysRequest) -> ListKeysResponse:
        """API keys of the namespace (administrators) or the caller's own."""
        caller = _caller(ctx)
        namespace = _namespace(caller, req.namespace)
        account = req.account
        if not _is_admin(caller, namespace):
            if namespace != caller.namespace or account not in (None, caller.sub):
                raise forbidden(ID, f"listing others' API keys needs the {ADMIN!r} scope")
            account = caller.sub
        return ListKeysResponse(await self._core.list_keys(namespace, account))

    async def delete_key(self, ctx: Context, req: KeyRequest) -> Empty:
        """Delete an API key (one's own, or any of the namespace as administrator)."""
        caller = _caller(ctx)
        namespace = _namespace(caller, req.namespace)
        if not _is_admin(caller, namespace):
            key = await self._core.get_key(req.id, namespace)
            if key.account != caller.sub:
                raise forbidden(ID, f"deleting others' API keys needs the {ADMIN!r} scope")
        await self._core.delete_key(req.id, namespace)
        return Empty()

    # -- administrators ------------------------------------------------------------------------

    async def generate(self, ctx: Context, req: GenerateRequest) -> GenerateResponse:
        """Create an account."""
        namespace = _admin(_caller(ctx), req.namespace, "creating accounts")
        account, secret = await self._core.create_account(
            req.id,
            secret=req.secret,
            type=req.type,
            scopes=req.scopes,
            metadata=req.metadata,
            namespace=namespace,
        )
        return GenerateResponse(account, secret)

    async def list(self, ctx: Context, req: NamespaceRequest) -> ListResponse:
        """The accounts of a namespace."""
        namespace = _admin(_caller(ctx), req.namespace, "listing accounts")
        return ListResponse(await self._core.list_accounts(namespace))

    async def delete(self, ctx: Context, req: AccountRequest) -> Empty:
        """Delete an account and its API keys."""
        namespace = _admin(_caller(ctx), req.namespace, "deleting accounts")
        await self._core.delete_account(req.id, namespace)
        return Empty()

    async def set_secret(self, ctx: Context, req: SetSecretRequest) -> Empty:
        """Replace an account's secret (its sessions end)."""
        namespace = _admin(_caller(ctx), req.namespace, "setting secrets")
        await self._core.set_secret(req.id, req.secret, namespace)
        return Empty()

    async def create_rule(self, ctx: Context, req: CreateRuleRequest) -> Empty:
        """Add a rule."""
        namespace = _admin(_caller(ctx), req.namespace, "creating rules")
        await self._core.create_rule(req.rule, namespace)
        return Empty()

    async def delete_rule(self, ctx: Context, req: RuleRequest) -> Empty:
        """Delete a rule."""
        namespace = _admin(_caller(ctx), req.namespace, "deleting rules")
        await self._core.delete_rule(req.id, namespace)
        return Empty()

    async def list_rules(self, ctx: Context, req: NamespaceRequest) -> ListRulesResponse:
        """The rules of a namespace (administrators and services: they enforce them)."""
        caller = _caller(ctx)
        namespace = req.namespace or caller.namespace
        # A service of namespace ``micro`` may load the rules of any namespace.
        service_here = SERVICE in caller.scopes and caller.namespace in (
            namespace,
            DEFAULT_NAMESPACE,
        )
        if not service_here:
            namespace = _admin(caller, req.namespace, "listing rules")
        return ListRulesResponse(await self._core.list_rules(namespace))

    async def rotate_keys(self, ctx: Context, req: Empty) -> RotateKeysResponse:
        """Make a new signing key."""
        caller = _caller(ctx)
        if not (ADMIN in caller.scopes and caller.namespace == DEFAULT_NAMESPACE):
            raise forbidden(
                ID,
                f"rotating signing keys needs the {ADMIN!r} scope in namespace "
                f"{DEFAULT_NAMESPACE!r}",
            )
        return RotateKeysResponse(await self._core.rotate_keys())


AuthHandler = Auth
"""The name ``micro server`` imports (like ``SyncHandler``, ``StoreHandler``)."""
