"""``micro server``: hosts the core services on one RPC listener, plus the HTTP gateway.

::

    :8081  RPC ── registry  (Registry.*)   backend: MemoryRegistry + reaper
               ├─ broker    (Broker.*)     backend: MemoryBroker
               ├─ store     (Store.*)      backend: SqliteStore (data_dir/store.db)
               ├─ config    (Config.*)     backend: SqliteConfig (data_dir/config.db)
               ├─ events    (Events.*)     backend: SqliteEvents (data_dir/events.db)
               ├─ sync      (Sync.*)       backend: SqliteSync (data_dir/sync.db)
               ├─ monitor   (Monitor.*)    probes every node, runs checks, raises alerts
               ├─ auth      (Auth.*)       accounts, tokens, rules (state in the store)
               ├─ token     (Token.*)      one-time tokens (state in the store)
               ├─ identity  (Identity.*)   the CA: certificates for services (data_dir/ca)
               └─ runtime   (Runtime.*)    backend: LocalRuntime (supervised processes)
    :8080  HTTP gateway ──> any registered service

Auth is on: every endpoint is guarded (micro.auth.guard); the first start creates ``admin``
and prints its password once; ``data_dir/credentials`` holds the local admin API key. With
``tls`` (MICRO_TLS=1) the RPC listener speaks mutual TLS (micro.identity.bootstrap).

Each core service is an ordinary :class:`~micro.Service` sharing the listener, registered in
the registry like any other, so ``micro services`` lists them too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..auth import DEFAULT_NAMESPACE
from ..broker.handler import BrokerHandler
from ..client import Client
from ..config.handler import ConfigHandler
from ..errors import MicroError
from ..events.handler import EventsHandler
from ..gateway import Gateway
from ..monitor.handler import MonitorHandler
from ..monitor.monitor import Monitor
from ..registry.handler import RegistryHandler
from ..registry.memory import MemoryRegistry
from ..service import Service
from ..service.process import serve_until_signal
from ..settings import Settings
from ..store.handler import StoreHandler
from ..sync.handler import SyncHandler
from ..transport.client import split_address
from ..transport.server import Router, RpcServer
from .backends import open_backends

__all__ = ["MicroServer", "ServerOptions"]

log = logging.getLogger("micro.server")


def announce_admin(password: str) -> None:
    """Print the first admin password, once, where the operator sees it."""
    print(
        "\n  micro server: created the account 'admin' with the password\n\n"
        f"      {password}\n\n  It is shown only this once (only its hash is kept). "
        "On this machine the CLI\n  logs in by itself; elsewhere: micro login --id admin\n",
        file=sys.stderr,
        flush=True,
    )


@dataclass(frozen=True)
class ServerOptions:
    """Where the server listens and keeps state."""

    address: str = "127.0.0.1:8081"
    gateway: str | None = "127.0.0.1:8080"  # None: no gateway
    data_dir: Path = field(default_factory=lambda: Settings.from_env().data_dir)
    runtime: bool = True  # supervise services started with `micro run`
    reap_interval: float = 1.0
    profile: str = field(default_factory=lambda: Settings.from_env().profile)  # local|cluster
    auth: bool = True  # False: no auth at all (tests of other parts only; never in production)
    tls: bool = field(default_factory=lambda: Settings.from_env().tls)  # mutual TLS for RPC
    # the gateway (docs/gateway.md)
    cors_origins: tuple[str, ...] = ()
    rate_per_ip: float = 100.0  # requests/s per client address (0: no limit)
    rate_per_account: float = 100.0  # requests/s per account (0: no limit)
    trust_forwarded: bool = False  # take the client address from X-Forwarded-For
    metrics_public: bool = False  # /metrics without an admin token
    gateway_cert: Path | None = None  # HTTPS for the gateway (with gateway_key)
    gateway_key: Path | None = None


class MicroServer:
    """The core runtime in one process."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.options.data_dir.mkdir(parents=True, exist_ok=True)
        self.backends = open_backends(self.options.profile, self.options.data_dir)
        self.registry = self.backends.registry
        self.broker = self.backends.broker
        self.store = self.backends.store
        self.config = self.backends.config
        self.events = self.backends.events
        self.sync = self.backends.sync
        self.monitor: Monitor | None = None
        self.router = Router()
        self.rpc = RpcServer(self.router)
        self.client = Client(self.registry)
        self.gateway: Gateway | None = None
        self.runtime: Any = None
        self.services: list[Service] = []
        self.auth: Any = None  # micro.auth.core.AuthCore once started (None: auth off)
        self.guard: Any = None  # the core services' and gateway's micro.auth.guard.Guard
        self.tokens: Any = None  # the token service's backend
        self.ca: Any = None  # the identity service's micro.identity.ca.CertificateAuthority
        self.tls: Any = None  # MICRO_TLS=1: this server's micro.identity.tls.Credentials
        self._tls_task: asyncio.Task[None] | None = None
        self.admin_password: str | None = None  # set on the first start only
        self._service_secrets: dict[str, str] = {}
        self._reaper: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """The RPC ``host:port`` (after :meth:`start`)."""
        return self.rpc.address

    def _core(self, name: str, handler: object, handler_name: str) -> Service:
        settings = Settings(server=self.rpc.address, data_dir=self.options.data_dir)
        svc = Service(
            name,
            registry=self.registry,
            client=self.client,
            settings=settings,
            register_ttl=60.0,
            auth=self.guard if self.guard is not None else False,
        )
        svc.handler(handler, name=handler_name)
        return svc

    async def start(self) -> None:
        """Listen, start the core services and the gateway, bring back supervised services."""
        host, port = split_address(self.options.address)
        listen_ssl = await self._start_tls() if self.options.tls else None
        await self.rpc.start(host, port, ssl=listen_ssl)
        await self.backends.start()
        if isinstance(self.registry, MemoryRegistry):  # etcd expires nodes by itself
            self._reaper = asyncio.get_running_loop().create_task(
                self.registry.run_reaper(self.options.reap_interval)
            )
        await self._start_auth()
        tenancy = self.auth is not None  # namespaces kept apart once callers are known
        for name, handler in (
            ("registry", RegistryHandler(self.registry, tenancy=tenancy)),
            ("broker", BrokerHandler(self.broker, tenancy=tenancy)),
            ("store", StoreHandler(self.store, tenancy=tenancy)),
            ("config", ConfigHandler(self.config, tenancy=tenancy)),
            ("events", EventsHandler(self.events, tenancy=tenancy)),
            ("sync", SyncHandler(self.sync, tenancy=tenancy)),
            *self._security_handlers(),
        ):
            self.services.append(self._core(name, handler, name.capitalize()))
        prober: dict[str, Any] = {}
        if self.tls is not None:  # nodes listen with mutual TLS: probe with our certificate
            from functools import partial

            from ..monitor.probe import probe

            prober["prober"] = partial(probe, ssl=self.tls.client_context)
        self.monitor = Monitor(self.registry, self.client, self.events, self.store, **prober)
        self.services.append(self._core("monitor", MonitorHandler(self.monitor), "Monitor"))
        if self.options.runtime:
            from ..runtime.handler import RuntimeHandler
            from ..runtime.local import LocalRuntime

            self.runtime = LocalRuntime(
                self.options.data_dir,
                server=self.rpc.address,
                registry=self.registry,
                events=self.events,
                config=self.config,
                credentials=self._service_account if self.auth is not None else None,
            )
            self.services.append(self._core("runtime", RuntimeHandler(self.runtime), "Runtime"))
        if self.options.gateway is not None:
            opts = self.options
            gateway_ssl = None
            if opts.gateway_cert is not None and opts.gateway_key is not None:
                import ssl

                gateway_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                gateway_ssl.load_cert_chain(opts.gateway_cert, opts.gateway_key)
            self.gateway = Gateway(
                self.client,
                self.options.gateway,
                guard=self.guard,
                exchange=self.auth.exchange if self.auth is not None else None,
                cors_origins=opts.cors_origins,
                rate_per_ip=opts.rate_per_ip,
                burst_per_ip=opts.rate_per_ip * 2,
                rate_per_account=opts.rate_per_account,
                burst_per_account=opts.rate_per_account * 2,
                trust_forwarded=opts.trust_forwarded,
                metrics_public=opts.metrics_public,
                ssl=gateway_ssl,
            )
            # the gateway's spans and stats, served like any service's (micro trace, stats)
            self.services.append(self._core("gateway", self.gateway.debug.handler, "Debug"))
        for svc in self.services:
            await svc.start(server=self.rpc)
        await self.monitor.start()
        if self.gateway is not None:
            await self.gateway.start()
        if self.runtime is not None:
            await self.runtime.start()
        log.info(
            "micro server: RPC on %s, gateway on %s, data in %s",
            self.rpc.address,
            self.gateway.address if self.gateway else "-",
            self.options.data_dir,
        )

    async def _start_auth(self) -> None:
        """Open the auth service's state, create the first admin (printing its password
        once), write the local admin credential and build the guard of the core services."""
        if not self.options.auth:
            log.warning("micro server: auth is OFF: every caller may call everything")
            return
        from ..auth.core import AuthCore
        from ..auth.guard import Guard

        self.auth = AuthCore(self.store)
        await self._open_ca()
        password = await self.auth.start()
        if password is not None:
            self.admin_password = password
            announce_admin(password)
        await self._local_credential()
        self.guard = Guard(self.auth.verifier(), lambda: self.auth_rules(), namespace=None)
        await self.guard.start()

    async def _open_ca(self) -> Any:
        from ..identity.ca import CertificateAuthority

        if self.ca is None:
            self.ca = await CertificateAuthority.open(self.options.data_dir / "ca")
        return self.ca

    async def _start_tls(self) -> Any:
        """MICRO_TLS=1: sign this server's own certificate, use it for the calls the server
        makes (gateway, monitor probes) and listen with it; clients without a certificate
        are let in too, so a new service can log in and ask for its own."""
        from ..identity.tls import Credentials, Material

        if not self.options.auth:
            raise RuntimeError("MICRO_TLS=1 needs auth: certificates are issued to accounts")
        ca = await self._open_ca()
        key, chain = self._server_certificate(ca)
        self.tls = Credentials(
            Material(chain, key, ca.bundle_pem(), ca.crl_pem()), optional_clients=True
        )
        self.client.pool.ssl = self.tls.client_context
        self._tls_task = asyncio.get_running_loop().create_task(self._renew_tls(ca))
        return self.tls.server_context()

    @staticmethod
    def _server_certificate(ca: Any) -> tuple[bytes, bytes]:
        from ..identity.client import make_csr

        key, csr = make_csr()
        return key, ca.sign(csr, namespace=DEFAULT_NAMESPACE, service="server")

    async def _renew_tls(self, ca: Any, every: float = 60.0) -> None:
        """Keep the server's certificate fresh (renewed at 2/3 of its lifetime) and its CRL
        current, so revocations reach new connections within ``every`` seconds."""
        import time

        while True:
            await asyncio.sleep(every)
            try:
                tls = self.tls
                due = tls.not_before + (tls.not_after - tls.not_before) * 2 / 3
                if time.time() >= due:
                    key, chain = self._server_certificate(ca)
                    tls.update(chain=chain, key=key, crl=ca.crl_pem())
                else:
                    tls.update(crl=ca.crl_pem())
            except Exception:
                log.exception("micro server: cannot renew its TLS certificate; retrying")

    async def auth_rules(self) -> list[Any]:
        """The rules the core services and the gateway apply."""
        assert self.auth is not None
        return list(await self.auth.list_rules(DEFAULT_NAMESPACE))

    async def _local_credential(self) -> None:
        """Keep an admin API key in ``<data dir>/credentials`` (0600) for the CLI and services
        on this machine; a missing or no longer valid one is replaced."""
        from ..auth.session import read_local_credential, write_local_credential

        assert self.auth is not None
        found = read_local_credential(self.options.data_dir)
        if found is not None:
            try:
                await self.auth.exchange(found.api_key)
                return
            except MicroError as exc:
                if exc.code != "unauthorized":  # the store failing is not a stale key
                    raise
                log.info("micro server: the local credential is no longer valid; replacing it")
        _, key = await self.auth.create_key("admin", name=f"local {socket.gethostname()}")
        write_local_credential(self.options.data_dir, key, self.rpc.address)

    async def _service_account(self, spec: Any) -> dict[str, str]:
        """The environment that logs a service started by the runtime in as its own service
        account (created on first use; a new secret per server run, kept in memory only)."""
        from ..auth import SERVICE

        assert self.auth is not None
        secret = self._service_secrets.get(spec.name)
        if secret is None:
            try:
                _, secret = await self.auth.create_account(
                    spec.name, type="service", scopes=[SERVICE]
                )
            except MicroError as exc:
                if exc.code != "conflict":
                    raise
                secret = secrets.token_urlsafe(24)
                await self.auth.set_secret(spec.name, secret)
            self._service_secrets[spec.name] = secret
        env = {
            "MICRO_AUTH_ID": spec.name,
            "MICRO_AUTH_SECRET": secret,
            "MICRO_AUTH_NAMESPACE": DEFAULT_NAMESPACE,
        }
        if self.options.tls:
            from ..identity.bootstrap import ROOT_FILE

            env["MICRO_TLS"] = "1"
            env["MICRO_TLS_CA"] = str(self.options.data_dir / "ca" / ROOT_FILE)
        return env

    def _security_handlers(self) -> list[tuple[str, object]]:
        if self.auth is None:
            return []
        from ..auth.handler import AuthHandler
        from ..identity.handler import IdentityHandler
        from ..token.handler import TokenHandler
        from ..token.store import StoreTokens

        self.tokens = StoreTokens(self.store)
        return [
            ("auth", AuthHandler(self.auth)),
            ("token", TokenHandler(self.tokens)),
            ("identity", IdentityHandler(self.ca)),
        ]

    async def stop(self) -> None:
        """Stop supervised services (their desired state is kept), the gateway and the core."""
        if self.monitor is not None:
            await self.monitor.close()
        if self.runtime is not None:
            await self.runtime.close()
        if self.gateway is not None:
            await self.gateway.stop()
        await self.broker.close()  # ends open Subscribe streams now, not after the grace
        self.backends.end_streams()  # likewise for election Observe streams
        self.rpc.draining = True
        for svc in reversed(self.services):
            await svc.stop()
        self.services.clear()
        await self.rpc.stop(grace=5.0)
        if self._tls_task is not None:
            self._tls_task.cancel()
            self._tls_task = None
        if self.guard is not None:
            await self.guard.close()
        if self.auth is not None:
            await self.auth.close()
        await self.backends.close()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        await self.client.close()

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT."""
        await serve_until_signal(self.start, self.stop, "micro server")

    async def __aenter__(self) -> MicroServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
