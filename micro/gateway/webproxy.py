"""The web proxy: ``/web/{service}/...`` reverse-proxies HTTP and WebSockets to services that
serve HTTP themselves (an ASGI app inside a service, see :func:`micro.service.web.serve_asgi`).

A service node that serves HTTP says where in its registry metadata: ``web`` is the base URL,
such as ``http://127.0.0.1:8123``. ``/web/{service}/{tail}`` goes to ``{web}/{tail}`` of one
of those nodes (round robin), query string included; ``/web/{service}`` redirects to
``/web/{service}/``.

- **Requests.** Method, headers and body are forwarded; the body is streamed as it arrives
  (never buffered whole, so the gateway's 4 MiB body limit does not apply). Hop-by-hop
  headers (``Connection`` and those it names, ``Keep-Alive``, ``TE``, ``Trailer``,
  ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``) are dropped; ``X-Forwarded-For`` (the
  client appended), ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Forwarded-Prefix:
  /web/{service}`` are set, so the app can build its public URLs.
- **Responses.** Status, headers (hop-by-hop ones dropped) and body, streamed as they come,
  compressed bodies untouched. A ``Location`` pointing at the node's own base URL is
  rewritten to the gateway prefix.
- **WebSockets.** An upgrade request opens a WebSocket to the app first (its sub-protocol
  is offered back to the client), then text, binary and close frames are relayed both ways
  until either side closes.
- **Errors** (JSON, as every gateway error): 404 when the service is unknown or none of its
  nodes serves HTTP, 502 when the app cannot be reached or breaks before answering (a
  failure mid-body aborts the client connection, so a cut body is never taken for a whole
  one).
- **Auth.** With a guard, the caller (bearer token, API key or ``micro-token`` cookie) must
  pass the rules for service ``{service}`` and endpoint ``Web.{METHOD}`` (``Web.GET``,
  ``Web.POST``, ...; a WebSocket upgrade is ``Web.GET``). Nothing is open by default: a rule
  such as ``micro auth create rule blog --scope '' --resource 'blog:Web.*'`` makes a site
  public. A caller of namespace ``N`` reaches ``N``'s services, as with RPC calls. A verified
  caller's ``Authorization`` is forwarded as a bearer access token (an API key is exchanged
  for one), so the app may check it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..errors import MicroError, bad_request, not_found
from ..registry import Node

if TYPE_CHECKING:
    from . import Gateway

__all__ = ["METADATA_KEY", "PREFIX", "install"]

PREFIX = "/web"
"""Where the proxied services live on the gateway."""

METADATA_KEY = "web"
"""The node metadata key holding a node's HTTP base URL."""

ID = "gateway"
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# aiohttp's WebSocket client makes its own handshake headers
_WS_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
_CHUNK = 64 * 1024
_MAX_WS_MESSAGE = 4 * 1024 * 1024


class _BadGateway(MicroError):
    def __init__(self, detail: str) -> None:
        super().__init__(ID, "bad_gateway", detail, 502)


def install(gateway: Gateway) -> None:
    """Serve ``/web/{service}/...`` on ``gateway`` (any method). Call it before the gateway
    starts; the HTTP client it uses closes with the gateway."""
    proxy = _Proxy(gateway)
    gateway.add_route("*", PREFIX + "/{service}", proxy.redirect)
    gateway.add_route("*", PREFIX + "/{service}/{tail*}", proxy.handle)
    gateway.on_stop(proxy.close)


def _forwardable(
    headers: CIMultiDictProxy[str], drop: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop ones (and those in ``drop``)."""
    named = {
        part.strip().lower()
        for value in headers.getall("Connection", [])
        for part in value.split(",")
        if part.strip()
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in _HOP_BY_HOP or low in named or low in drop:
            continue
        out.add(name, value)
    return out


class _Proxy:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.gateway.timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def redirect(
        self, request: web.BaseRequest, params: dict[str, str]
    ) -> web.StreamResponse:
        location = request.rel_url.raw_path + "/"
        if request.rel_url.raw_query_string:
            location += "?" + request.rel_url.raw_query_string
        raise web.HTTPPermanentRedirect(location)

    async def handle(self, request: web.BaseRequest, params: dict[str, str]) -> web.StreamResponse:
        service = params["service"]
        try:
            if not _SERVICE.match(service):
                raise bad_request(ID, f"invalid service name {service!r}")
            metadata: dict[str, str] = {}
            if self.gateway.guard is not None:
                service = await self.gateway._authorize(
                    request, service, f"Web.{request.method}", metadata
                )
            base = await self._base(service)
        except MicroError as err:
            return self.gateway.error(request, err)
        prefix = f"{PREFIX}/{params['service']}"
        tail = request.rel_url.raw_path[len(prefix) :] or "/"
        query = request.rel_url.raw_query_string
        url = URL(base + tail + (f"?{query}" if query else ""), encoded=True)
        headers = self._headers(request, prefix, metadata)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, url, headers)
        return await self._http(request, url, headers, base, prefix)

    async def _base(self, service: str) -> str:
        """The base URL of a node of ``service`` that serves HTTP."""
        view = self.gateway.client.view
        if view is None:
            raise not_found(ID, "the gateway has no registry to find web services in")
        nodes: list[Node] | None = view.nodes(service)
        if nodes is None:
            nodes = await view.load(service)  # not_found for an unknown service
        web_nodes = [n for n in nodes if n.metadata.get(METADATA_KEY)]
        if not web_nodes:
            raise not_found(ID, f"no node of {service!r} serves HTTP")
        node = self.gateway.client.select(f"{service} {METADATA_KEY}", web_nodes)
        return node.metadata[METADATA_KEY].rstrip("/")

    def _headers(
        self, request: web.BaseRequest, prefix: str, metadata: dict[str, str]
    ) -> CIMultiDict[str]:
        headers = _forwardable(request.headers, frozenset({"host"}))
        if "authorization" in metadata:
            headers["Authorization"] = metadata["authorization"]
        peer = request.remote or ""
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
        headers["X-Forwarded-Proto"] = request.scheme
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Prefix"] = prefix
        return headers

    async def _http(
        self,
        request: web.BaseRequest,
        url: URL,
        headers: CIMultiDict[str],
        base: str,
        prefix: str,
    ) -> web.StreamResponse:
        data = request.content if request.body_exists else None
        try:
            upstream = await self.session().request(
                request.method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return self.gateway.error(
                request, _BadGateway(f"{url.host}:{url.port} did not answer: {exc}")
            )
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in _forwardable(upstream.headers).items():
                if name.lower() == "location" and value.startswith(base):
                    value = prefix + (value[len(base) :] or "/")
                response.headers.add(name, value)
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(_CHUNK):
                    await response.write(chunk)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError):
                # the app broke mid-body (or the client left): cut the client off rather
                # than end the body cleanly
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write_eof()
        return response

    async def _websocket(
        self, request: web.BaseRequest, url: URL, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        protocols = [
            p.strip()
            for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in value.split(",")
            if p.strip()
        ]
        headers = CIMultiDict(
            (name, value) for name, value in headers.items() if name.lower() not in _WS_HANDSHAKE
        )
        try:
            upstream = await self.session().ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                autoclose=False,
                autoping=True,
                max_msg_size=_MAX_WS_MESSAGE,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return self.gateway.error(
                request, _BadGateway(f"the app refused the WebSocket: {exc.status} {exc.message}")
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return self.gateway.error(
                request, _BadGateway(f"{url.host}:{url.port} did not answer: {exc}")
            )
        async with upstream:
            client = web.WebSocketResponse(
                protocols=[upstream.protocol] if upstream.protocol else (),
                autoclose=False,
                max_msg_size=_MAX_WS_MESSAGE,
            )
            await client.prepare(request)
            await _relay(client, upstream)
        return client


async def _relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Relay frames both ways until one side closes; close the other side with its code."""

    async def pump(
        source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    ) -> None:
        while True:
            msg = await source.receive()
            if msg.type is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                code = msg.data if isinstance(msg.data, int) else 1000
                await sink.close(code=code, message=(msg.extra or "").encode())
                await source.close()
                return
            else:  # CLOSING, CLOSED, ERROR: the source is gone
                await sink.close(code=1011 if msg.type is WSMsgType.ERROR else 1000)
                return

    to_upstream = asyncio.ensure_future(pump(client, upstream))
    to_client = asyncio.ensure_future(pump(upstream, client))
    try:
        await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_upstream, to_client):
            task.cancel()
        await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        with contextlib.suppress(Exception):
            await client.close()
        with contextlib.suppress(Exception):
            await upstream.close()
