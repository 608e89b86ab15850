"""Tenancy: which namespace a caller of a core service may see.

Namespaces isolate tenants: the registry, store, config, events, broker and sync state of
one namespace are invisible to accounts of another. The core service handlers enforce it when their
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
- **registry** prefixes names transparently: a service ``greeter`` registered by a caller
  of ``acme`` is stored as :func:`qualified` ``("acme", "greeter")`` = ``"acme/greeter"``
  and shown to callers of ``acme`` as ``greeter``.
- **events** topics, **broker** topics and **sync** names (locks, elections, maps, queues,
  workers) are prefixed transparently by one scheme, :class:`Names`: a caller of ``acme``
  names ``orders``, the backend stores ``"acme--orders"`` (:data:`NAME_SEP`), answers show
  ``orders`` again. To keep the stored names of different namespaces apart, a confined
  caller's names may not contain ``--`` nor begin with ``-`` (``bad_request``).

Names of namespace ``"micro"`` are stored unprefixed, so nothing changes for a
single-tenant server.

Why the ``--`` scheme cannot collide: a stored name ``N--n`` (``n`` without ``--``, not
beginning with ``-``) has its *last* ``--`` right before ``n``, so ``N`` and ``n`` can be
read back; the names of ``micro`` contain no ``--`` at all. So each stored name belongs to
exactly one namespace, whatever characters ``N`` (``[A-Za-z0-9_.-]``) and the service's
names may use otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ..context import Context
from ..errors import MicroError, bad_request, forbidden
from . import ADMIN, DEFAULT_NAMESPACE

__all__ = [
    "NAME_SEP",
    "SEP",
    "Names",
    "caller_names",
    "caller_namespace",
    "check_same",
    "qualified",
    "shown_errors",
    "split",
]

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


NAME_SEP = "--"
"""Between the namespace and the name in a name stored by :class:`Names` (events and broker
topics, sync names)."""


class Names:
    """How a caller confined to ``namespace`` names the things of ``service`` (its error id)
    whose stored names are at most ``max_len`` characters: :meth:`stored` maps the caller's
    name to the backend's (checking the rules of the module docstring), :meth:`shown` maps a
    stored name back (``None``: not one of the caller's names).

    The service checks the syntax of its own names first; :meth:`stored` only adds the
    namespace rules."""

    def __init__(self, namespace: str, service: str, max_len: int) -> None:
        self.namespace = namespace
        self.service = service
        self.max_len = max_len
        self.prefix = "" if namespace == DEFAULT_NAMESPACE else namespace + NAME_SEP

    def stored(self, name: str, what: str, *, room: int | None = None) -> str:
        """The stored form of the caller's ``name`` (called ``what`` in errors), of at most
        ``room`` characters (default ``max_len``); ``bad_request`` if it contains
        :data:`NAME_SEP`, begins with ``-`` or is too long once prefixed."""
        if NAME_SEP in name or name.startswith("-"):
            raise bad_request(
                self.service,
                f"{what} {name!r} must not contain {NAME_SEP!r} nor begin with '-' "
                "(they separate namespaces)",
            )
        limit = self.max_len if room is None else room
        if len(self.prefix) + len(name) > limit:
            raise bad_request(
                self.service,
                f"{what} {name!r} is too long: at most {limit - len(self.prefix)} "
                f"characters in namespace {self.namespace!r}",
            )
        return self.prefix + name

    def shown(self, stored: str) -> str | None:
        """The caller's name for ``stored``; ``None`` if it is not one of the caller's."""
        if not stored.startswith(self.prefix):
            return None
        name = stored[len(self.prefix) :]
        if not name or NAME_SEP in name or name.startswith("-"):
            return None
        return name

    def show(self, stored: str) -> str:
        """:meth:`shown`, or ``stored`` itself when it is not the caller's name."""
        shown = self.shown(stored)
        return stored if shown is None else shown

    def error(self, err: MicroError, names: Mapping[str, str]) -> MicroError:
        """``err`` with the stored names (keys of ``names``, quoted as ``repr``) in its
        detail replaced by the caller's (the values)."""
        detail = err.detail
        for stored, shown in names.items():
            if stored != shown:
                detail = detail.replace(repr(stored), repr(shown))
        return err if detail == err.detail else MicroError(err.id, err.code, detail, err.status)


@contextmanager
def shown_errors(names: Names | None, renames: Mapping[str, str]) -> Iterator[None]:
    """Re-raise a :class:`~micro.errors.MicroError` of the block with the stored names of
    ``renames`` replaced by the caller's (see :meth:`Names.error`); nothing when ``names``
    is ``None`` (names as stored)."""
    try:
        yield
    except MicroError as err:
        if names is None:
            raise
        raise names.error(err, renames) from None


def caller_names(ctx: Context | None, service: str, max_len: int) -> Names | None:
    """The :class:`Names` of the caller of ``ctx``; ``None`` when it is unrestricted (it
    names things as stored)."""
    namespace = caller_namespace(ctx)
    return None if namespace is None else Names(namespace, service, max_len)
