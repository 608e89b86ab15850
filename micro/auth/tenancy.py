"""Tenancy: which namespace a caller of a core service may see.

Namespaces isolate tenants: the registry, store, config and events of one namespace are
invisible to accounts of another. The core service handlers enforce it when their
``tenancy`` flag is on (``micro server`` turns it on when auth is on), reading the verified
caller from ``ctx.account`` (set by the auth guard) through :func:`caller_namespace`:

- ``None`` — *unrestricted*: an account of namespace :data:`~micro.auth.DEFAULT_NAMESPACE`
  (``"micro"``) with scope :data:`~micro.auth.ADMIN`, the platform operator. Sees and may
  touch everything, names as stored.
- a namespace ``N`` — the caller's account namespace. A caller without an account
  (anonymous, or no context at all) counts as ``"micro"``: only public endpoints (such as
  the registry reads) let it through the guard.

How each service applies it:

- **store**: a caller of ``N`` may use database ``N`` only (``forbidden`` otherwise, see
  :func:`check_same`); ``Store.Databases`` lists only ``N``.
- **config**: a caller of ``N`` may use config namespace ``N`` only.
- **registry** and **events** prefix names transparently: a service ``greeter`` registered
  by a caller of ``acme`` is stored as :func:`qualified` ``("acme", "greeter")`` =
  ``"acme/greeter"`` and shown to callers of ``acme`` as ``greeter``; topics likewise, with
  :data:`micro.events.handler.TOPIC_SEP`. Names of namespace ``"micro"`` are stored
  unprefixed, so nothing changes for a single-tenant server.
"""

from __future__ import annotations

from ..context import Context
from ..errors import forbidden
from . import ADMIN, DEFAULT_NAMESPACE

__all__ = ["SEP", "caller_namespace", "check_same", "qualified", "split"]

SEP = "/"
"""Between the namespace and the name of a service in the registry. Never valid in a
service name (``[A-Za-z0-9][A-Za-z0-9_.-]*``) nor in a namespace."""


def caller_namespace(ctx: Context | None) -> str | None:
    """The namespace the caller of ``ctx`` is confined to, or ``None`` when it is
    unrestricted (an admin of namespace ``"micro"``). No account counts as ``"micro"``."""
    account = ctx.account if ctx is not None else None
    if account is None:
        return DEFAULT_NAMESPACE
    if account.namespace == DEFAULT_NAMESPACE and ADMIN in account.scopes:
        return None
    return account.namespace


def check_same(ctx: Context | None, namespace: str, what: str) -> None:
    """Raise ``forbidden`` (naming both namespaces) unless the caller of ``ctx`` may use
    ``what`` (e.g. ``"database"``) of ``namespace``: it is unrestricted or confined to
    ``namespace``."""
    mine = caller_namespace(ctx)
    if mine is None or mine == namespace:
        return
    service = ctx.service if ctx is not None and ctx.service else "auth"
    raise forbidden(
        service,
        f"an account of namespace {mine!r} may not use the {what} of namespace {namespace!r}",
    )


def qualified(namespace: str, name: str) -> str:
    """The registry name of service ``name`` of ``namespace``: ``name`` itself in
    ``"micro"``, else ``f"{namespace}/{name}"``. The gateway routes a caller of ``namespace``
    to this name."""
    if namespace == DEFAULT_NAMESPACE:
        return name
    return f"{namespace}{SEP}{name}"


def split(stored: str) -> tuple[str, str]:
    """The inverse of :func:`qualified`: ``(namespace, name)`` of a stored service name."""
    namespace, sep, name = stored.partition(SEP)
    if not sep:
        return DEFAULT_NAMESPACE, stored
    return namespace, name
