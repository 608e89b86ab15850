"""How a service joins the platform's auth: log in, verify callers, follow the rules."""

from __future__ import annotations

import logging

from ..client import Client
from ..errors import MicroError
from ..settings import Settings
from . import Tokens
from .guard import Guard
from .rpc import RpcAuth
from .session import Credential, Login, Session, credential_from_env
from .verify import Verifier

__all__ = ["connect_service", "login_with"]

log = logging.getLogger("micro.auth")


def login_with(auth: RpcAuth) -> Login:
    """A login function for :class:`Session` over the auth service client ``auth``."""

    async def login(credential: Credential) -> Tokens:
        if credential.api_key:
            return await auth.exchange(credential.api_key)
        return await auth.login(credential.id, credential.secret, credential.namespace)

    return login


async def connect_service(
    settings: Settings, client: Client, name: str
) -> tuple[Session | None, Guard]:
    """The session (None without a credential) and guard of service ``name``; the caller
    makes the session its client's credentials, then starts the guard (loading the rules
    needs them).

    A refused or unreachable login does not stop the service from starting: the session
    keeps trying in the background (the service cannot register until it succeeds)."""
    auth = RpcAuth(settings.server, client=client)
    credential = credential_from_env(settings.data_dir)
    session: Session | None = None
    if credential is None:
        log.warning(
            "%s: no credential (MICRO_AUTH_ID and MICRO_AUTH_SECRET, MICRO_API_KEY, or the "
            "server's %s): it calls anonymously and cannot register",
            name,
            settings.data_dir / "credentials",
        )
    else:
        session = Session(credential, login_with(auth), auth.refresh)
        try:
            await session.start()
        except (MicroError, OSError) as exc:
            log.warning("%s: cannot log in as %r (%s); retrying", name, credential, exc)
            session.keep_trying()
    verifier = Verifier(fetch=auth.jwks)
    guard = Guard(
        verifier, lambda: auth.list_rules(settings.namespace), namespace=settings.namespace
    )
    return session, guard
