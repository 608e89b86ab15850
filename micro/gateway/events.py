"""The gateway's events handler: ``POST /events/{topic}`` publishes the body as an event.

The body is any JSON value (object, array, string, number, ...), at most the gateway's body
limit (and the events backend's own limit, 1 MiB by default: 413 beyond either); it is
stored as sent, with ``content-type: application/json`` in the event's metadata. The answer
is ``201 {"topic", "sequence", "id", "duplicate"}`` once the event is durable.

- **Topic.** ``[A-Za-z0-9_.-]{1,255}`` (:data:`micro.events.NAME_PATTERN`), else 400.
- **Idempotency.** An ``Idempotency-Key`` header becomes the event's ``message_id``: the
  same key on the same topic within the de-duplication window (2 minutes by default)
  appends nothing and answers the first event's sequence with ``"duplicate": true``. Without
  the header the gateway makes a random id; ``id`` in the answer is the one used.
- **Auth.** With a guard, the caller (``Authorization: Bearer`` access token or API key, or
  the ``micro-token`` cookie, as for every gateway call) must pass the rules for service
  ``events``, endpoint ``Events.Publish`` (anonymous: 401, refused: 403). The event is then
  published by calling the ``events`` service with the caller's token, so the service's own
  guard and tenancy apply: a caller of namespace ``N`` publishes into ``N``'s topics (see
  :mod:`micro.events.handler`). Given an events backend instead (embedded use, no
  ``events`` service), the handler publishes into it directly with the same tenancy rule.

The route only takes ``POST`` on two-segment paths: other methods and longer paths under
``/events/`` still reach the generic gateway route, so ``/events/events/read`` calls
``Events.Read``; ``POST /events/read`` now publishes to the topic ``read``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from ..auth import Claims
from ..context import Context
from ..errors import MicroError, bad_request, too_large
from ..events import MAX_MESSAGE_ID, NAME_PATTERN, Ack, Events
from ..events.handler import EventsHandler
from ..events.messages import PublishRequest

if TYPE_CHECKING:
    from . import Gateway

__all__ = ["ENDPOINT", "PATH", "SERVICE", "Published", "install"]

PATH = "/events/{topic}"
"""The route :func:`install` adds."""

SERVICE = "events"
ENDPOINT = "Events.Publish"
"""Who the rules must let the caller call: the ``events`` service's ``Events.Publish``."""

ID = "gateway"
_JSON = "application/json"
_json = msgspec.json.Encoder()


class Published(msgspec.Struct):
    """The answer to ``POST /events/{topic}``."""

    topic: str
    sequence: int
    id: str
    duplicate: bool = False


def install(gateway: Gateway, events: Events | None = None) -> None:
    """Serve ``POST /events/{topic}`` on ``gateway``: through the ``events`` service (the
    default, ``events=None``) or straight into the ``events`` backend. Call it before the
    gateway starts."""
    handler = _Publisher(gateway, events)
    gateway.add_route("POST", PATH, handler.handle)


class _Publisher:
    def __init__(self, gateway: Gateway, events: Events | None) -> None:
        self.gateway = gateway
        self.local = (
            EventsHandler(events, tenancy=gateway.guard is not None) if events is not None else None
        )

    async def handle(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        try:
            published = await self._publish(request, params["topic"])
        except MicroError as err:
            return self.gateway.error(request, err)
        return web.Response(body=_json.encode(published), status=201, content_type=_JSON)

    async def _publish(self, request: web.BaseRequest, topic: str) -> Published:
        metadata: dict[str, str] = {}
        claims = await self._caller(request, metadata)  # first: strangers learn nothing
        if not NAME_PATTERN.match(topic):
            raise bad_request(
                ID, f"topic {topic!r} must be 1-255 characters of letters, digits, '_', '.', '-'"
            )
        message_id = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
        if len(message_id) > MAX_MESSAGE_ID:
            raise bad_request(ID, f"Idempotency-Key is longer than {MAX_MESSAGE_ID} characters")
        body = await _body(request)
        publish = PublishRequest(
            topic, body, metadata={"content-type": _JSON}, message_id=message_id
        )
        if self.local is not None:
            ctx = Context(metadata, service=SERVICE, endpoint=ENDPOINT, peer=request.remote or "")
            ctx.account = claims
            ack = await self.local.publish(ctx, publish)
        else:
            ack = await self.gateway.client.call(
                SERVICE,
                ENDPOINT,
                publish,
                response_type=Ack,
                timeout=self.gateway.timeout,
                metadata=metadata,
            )
        return Published(topic, ack.sequence, message_id, ack.duplicate)

    async def _caller(self, request: web.BaseRequest, metadata: dict[str, str]) -> Claims | None:
        """The verified caller (``None``: anonymous), checked against the rules; its token
        goes into ``metadata``. Without a guard the ``Authorization`` header is passed on."""
        gateway = self.gateway
        guard = gateway.guard
        if guard is None:
            if auth := request.headers.get("Authorization"):
                metadata["authorization"] = auth
            return None
        claims = await gateway.caller(request, metadata)
        guard.check(claims, SERVICE, ENDPOINT, False)
        return claims


async def _body(request: web.BaseRequest) -> bytes:
    """The request body, checked to be one JSON value."""
    try:
        body = await request.read()  # at most the gateway's max_body
    except web.HTTPRequestEntityTooLarge as exc:
        raise too_large(ID, f"the event body is over the gateway's limit: {exc.text}") from None
    if not body.strip():
        raise bad_request(ID, "the event body must be JSON; it is empty")
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise bad_request(ID, f"the event body must be JSON: {exc}") from None
    return body
