"""The API gateway: HTTP/JSON in front of the RPC services.

``POST /{service}/{endpoint...}`` with a JSON body calls the endpoint resolved by
:func:`micro.gateway.resolve.resolve` and answers its JSON response. JSON is passed to the
service as is (codec JSON), so the gateway never re-encodes bodies; the service validates
them against its types. RPC errors become their HTTP status with the error as the JSON body.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from ..auth import Tokens
from ..auth.guard import Guard, bearer
from ..auth.session import API_KEY_PREFIX
from ..auth.tenancy import qualified
from ..client import Client
from ..debug import Instrumentation, instrument
from ..debug.trace import span
from ..errors import MicroError, bad_request, unauthorized
from ..transport.client import split_address
from ..transport.frames import Codec
from .resolve import resolve

__all__ = ["Gateway"]

log = logging.getLogger("micro.gateway")

_JSON = "application/json"
_MAX_BODY = 4 * 1024 * 1024 - 4096
_FORWARDED_PREFIX = "micro-"
_COOKIE = "micro-token"
_MAX_KEYS = 10_000
_json = msgspec.json.Encoder()


class Gateway:
    """Serves HTTP on ``address`` and forwards calls through ``client``."""

    def __init__(
        self,
        client: Client,
        address: str = "127.0.0.1:8080",
        timeout: float = 10.0,
        *,
        guard: Guard | None = None,
        exchange: Callable[[str], Awaitable[Tokens]] | None = None,
    ):
        self.client = client
        # auth at the edge (the service checks again): who calls, may they call it
        self.guard = guard
        self._exchange = exchange
        self._keys: dict[str, Tokens] = {}  # sha256(API key) -> its current access token
        self.address = address
        self.timeout = timeout
        self.debug: Instrumentation = instrument("gateway")
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=_MAX_BODY)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_route("*", "/{path:.*}", self._handle)

    async def start(self) -> str:
        """Listen; returns the ``host:port`` bound (a port of 0 picks a free one)."""
        host, port = split_address(self.address)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # type: ignore[attr-defined]
            bound = server.sockets[0].getsockname()  # type: ignore[attr-defined]
            self.address = f"{bound[0]}:{bound[1]}"
        log.info("gateway listening on http://%s", self.address)
        return self.address

    async def stop(self) -> None:
        """Stop listening and finish open requests."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            service, endpoint = resolve(request.match_info["path"])
            body = await self._body(request)
            timeout = self._timeout(request)
            metadata = {
                k.lower(): v
                for k, v in request.headers.items()
                if k.lower().startswith(_FORWARDED_PREFIX)
            }
            if self.guard is not None:
                service = await self._authorize(request, service, endpoint, metadata)
            elif auth := request.headers.get("Authorization"):
                metadata["authorization"] = auth
            where = f"{request.method} {request.path}"
            parent = request.headers.get("traceparent")
            with span(self.debug.recorder, "gateway", where, parent) as sp:
                metadata["traceparent"] = sp.traceparent
                reply = await self.client.call_raw(
                    service, endpoint, body, codec=Codec.JSON, timeout=timeout, metadata=metadata
                )
        except MicroError as err:
            log.debug("%s %s -> %s", request.method, request.path, err)
            return web.Response(
                body=_json.encode(err.to_dict()), status=err.status, content_type=_JSON
            )
        finally:
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s %.2fms",
                    request.method,
                    request.path,
                    (time.perf_counter() - started) * 1000,
                )
        return web.Response(body=reply, content_type=_JSON)

    async def _authorize(
        self, request: web.Request, service: str, endpoint: str, metadata: dict[str, str]
    ) -> str:
        """Verify the caller (``Authorization: Bearer`` with an access token or an API key,
        or the ``micro-token`` cookie), apply the rules and forward the access token; the
        service to call (a caller of namespace N reaches N's services)."""
        guard = self.guard
        assert guard is not None
        header = request.headers.get("Authorization") or request.cookies.get(_COOKIE, "")
        claims = None
        if header:
            token = bearer(header)
            if token.startswith(API_KEY_PREFIX):
                token = await self._access_for(token)
            claims = await guard.verifier.verify_async(token)
            metadata["authorization"] = f"Bearer {token}"
        if claims is not None:
            service = qualified(claims.namespace, service)
        guard.check(claims, service, endpoint, await self._public(service, endpoint))
        return service

    async def _public(self, service: str, endpoint: str) -> bool:
        """Whether the registry says ``service``/``endpoint`` is marked public."""
        view = self.client.view
        if view is None:
            return False
        try:
            await view.load(service)
        except MicroError:
            return False
        info = view.endpoint(service, endpoint)
        return info is not None and info.metadata.get("public") == "true"

    async def _access_for(self, api_key: str) -> str:
        """An access token for ``api_key``, exchanged once and reused until near expiry."""
        if self._exchange is None:
            raise unauthorized("gateway", "API keys are not accepted here")
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        tokens = self._keys.get(digest)
        if tokens is None or tokens.expiry - 30 <= time.time():
            tokens = await self._exchange(api_key)
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            self._keys[digest] = tokens
        return tokens.access_token

    async def _body(self, request: web.Request) -> bytes:
        if request.method in ("GET", "DELETE", "HEAD"):
            return _json.encode(dict(parse_qsl(request.query_string)))
        if request.content_length is not None and request.content_length > _MAX_BODY:
            raise MicroError("gateway", "too_large", f"body over {_MAX_BODY} bytes", 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise MicroError("gateway", "too_large", f"body over {_MAX_BODY} bytes", 413) from None
        head = body.lstrip()[:1]
        if not head or head in (b"{", b"["):
            return body  # JSON, whatever the Content-Type says (curl -d sends a form type)
        if request.content_type == "application/x-www-form-urlencoded":
            return _json.encode(dict(parse_qsl(body.decode("utf-8", "replace"))))
        raise bad_request("gateway", "the request body must be a JSON object")

    def _timeout(self, request: web.Request) -> float:
        header = request.headers.get("Micro-Timeout")
        if header is None:
            return self.timeout
        try:
            value = float(header)
        except ValueError:
            raise bad_request(
                "gateway", f"Micro-Timeout {header!r} is not a number of seconds"
            ) from None
        if not 0 < value <= 300:
            raise bad_request("gateway", "Micro-Timeout must be between 0 and 300 seconds")
        return value
