"""``micro proxy``: one authenticated address forwarding calls to every service.

Clients elsewhere point at it (``micro env add remote --proxy host:port`` or
``MICRO_SERVER=host:port``); see docs/proxy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .common import fail

if TYPE_CHECKING:
    from ssl import SSLContext

    from ..auth.session import Session
    from ..client import Client
    from ..identity.bootstrap import TlsClient
    from ..identity.client import IdentityClient
    from ..settings import Settings

__all__ = ["proxy", "register"]


def proxy(
    address: Annotated[
        str, typer.Option("--address", help="listen address (host:port)")
    ] = "127.0.0.1:8082",
    server: Annotated[
        str | None,
        typer.Option("--server", help="micro server to forward to (default: MICRO_SERVER)"),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option("--advertise", help="address clients reach the proxy at (default: --address)"),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="forward without checking tokens (auth-off servers)")
    ] = False,
) -> None:
    """Run an RPC proxy: every call it gets goes to the service named in it."""
    from ..errors import MicroError
    from ..service.process import configure_logging, run
    from ..settings import Settings
    from .envs import check_server

    try:
        settings = Settings.from_env()
        check_server(address, "--address")
        target = check_server(server or settings.server, "--server")
    except ValueError as exc:
        fail(str(exc))
    configure_logging("proxy")
    try:
        run(_serve(address, target, advertise, settings, auth=not no_auth))
    except (OSError, RuntimeError) as exc:
        fail(f"cannot start micro proxy: {exc}")
    except MicroError as err:  # e.g. its credential refused, or no certificate for it
        fail(f"cannot start micro proxy: {err.detail} ({err.code}, {err.status})")


async def _serve(
    address: str, server: str, advertise: str | None, settings: Settings, *, auth: bool
) -> None:
    from ..auth.rpc import RpcAuth
    from ..auth.verify import Verifier
    from ..client import Client
    from ..proxy import Proxy
    from ..registry.rpc import RpcRegistry
    from ..service.process import serve_until_signal
    from ..transport.client import ConnectionPool

    tls: TlsClient | None = None
    if settings.tls:
        from ..identity.bootstrap import TlsClient, ca_bundle

        tls = TlsClient(ca_bundle(settings.data_dir))
    ssl = tls.context if tls is not None else None
    registry = RpcRegistry(server, ssl=ssl)
    # forwarded calls carry their callers' tokens; the proxy's own (if any) is used only
    # to obtain its certificate
    client = Client(registry, pool=ConnectionPool(ssl=ssl) if ssl is not None else None)
    own: _Certificate | None = None
    listen_ssl: SSLContext | None = None
    if tls is not None:
        try:
            own = await _certificate(settings, server, tls)
        except BaseException:
            await client.close()
            await registry.close()
            raise
        listen_ssl = own.server_context
    verifier = Verifier(fetch=RpcAuth(server, client=client).jwks) if auth else None
    node = Proxy(client, address=address, advertise=advertise, verifier=verifier)

    async def start() -> None:
        await node.start(ssl=listen_ssl)

    async def stop() -> None:
        await node.stop()
        if own is not None:
            await own.close()
        await client.close()
        await registry.close()

    await serve_until_signal(start, stop, "proxy")


class _Certificate:
    """The proxy's own identity under ``MICRO_TLS=1``: the session of its credential, the
    small client that session and the identity client call the server with, the identity
    client renewing the certificate, and the listener's context."""

    def __init__(
        self,
        session: Session,
        client: Client,
        identity: IdentityClient,
        server_context: SSLContext,
    ) -> None:
        self.session = session
        self.client = client
        self.identity = identity
        self.server_context = server_context

    async def close(self) -> None:
        """Stop renewing the certificate and the tokens, then close the client."""
        await self.identity.close()
        await self.session.close()
        await self.client.close()


async def _certificate(settings: Settings, server: str, tls: TlsClient) -> _Certificate:
    """MICRO_TLS=1: log in with the credential in the environment and obtain (and keep
    renewing) the proxy's certificate; listen with it, requiring client certificates.
    Everything opened here is closed again if a step fails."""
    from ..auth.connect import login_with
    from ..auth.rpc import RpcAuth
    from ..auth.session import Session, credential_from_env
    from ..client import Client
    from ..identity.client import IdentityClient
    from ..identity.rpc import RpcIdentity
    from ..transport.client import ConnectionPool

    credential = credential_from_env(settings.data_dir)
    if credential is None:
        raise RuntimeError(
            "MICRO_TLS=1: the proxy needs a credential (MICRO_AUTH_ID and MICRO_AUTH_SECRET, "
            "or MICRO_API_KEY) to obtain its certificate"
        )
    own = Client(pool=ConnectionPool(ssl=tls.context))
    auth = RpcAuth(server, client=own)
    session = Session(credential, login_with(auth), auth.refresh)
    identity = IdentityClient(RpcIdentity(own, server), service="proxy")
    try:
        await session.start()
        own.credentials = session.header
        credentials = await identity.start()
    except BaseException:
        await identity.close()
        await session.close()
        await own.close()
        raise
    tls.credentials = credentials
    return _Certificate(session, own, identity, credentials.server_context())


def register(app: typer.Typer) -> None:
    """Add ``micro proxy``."""
    app.command("proxy")(proxy)
