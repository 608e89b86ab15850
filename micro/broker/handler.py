"""The ``broker`` RPC service: a thin layer over whichever broker backend runs it.

With ``tenancy`` on (see :mod:`micro.auth.tenancy`), topics are namespaced transparently,
exactly as the events service does it (one implementation,
:class:`~micro.auth.tenancy.Names`): for a caller confined to namespace ``N`` other than
``micro``, topic ``t`` is published and subscribed as ``f"{N}--{t}"``
(:data:`~micro.auth.tenancy.NAME_SEP`), and the messages delivered to it, like the topic
names in error details, show ``t``. Topics of ``micro`` are stored unprefixed. A confined
caller's topic (``micro``'s too) may not contain ``--`` nor begin with ``-``
(``bad_request``), and must fit in 255 characters once prefixed. Queue groups are per topic,
so a group name used in two namespaces makes two groups. Unrestricted callers (admins of
``micro``) and handlers with ``tenancy`` off use topics as stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from ..auth.tenancy import Names, caller_names, shown_errors
from ..context import Context
from . import Broker, check_topic
from .messages import PublishRequest, PublishResponse, SubscribeEvent, SubscribeRequest

__all__ = ["BrokerHandler"]

_ID = "broker"
_MAX_TOPIC = 255


class BrokerHandler:
    """Serves ``Broker.Publish`` and ``Broker.Subscribe`` (a server stream).

    ``Subscribe`` subscribes on behalf of the caller and streams what arrives; the
    subscription ends when the stream does (the caller closes it, cancels it, or its
    connection drops). ``tenancy``: keep each caller's namespace apart.
    """

    def __init__(self, backend: Broker, *, tenancy: bool = False) -> None:
        self._backend = backend
        self.tenancy = tenancy

    def _names(self, ctx: Context) -> Names | None:
        """The caller's naming of topics; None: topics as stored."""
        return caller_names(ctx, _ID, _MAX_TOPIC) if self.tenancy else None

    def _stored(self, names: Names | None, topic: str) -> str:
        if names is None:
            return topic
        return names.stored(check_topic(topic), "topic")

    async def publish(self, ctx: Context, req: PublishRequest) -> PublishResponse:
        """Publish one message."""
        names = self._names(ctx)
        topic = self._stored(names, req.topic)
        with shown_errors(names, {topic: req.topic}):
            return PublishResponse(await self._backend.publish(topic, req.body, req.metadata))

    async def subscribe(self, ctx: Context, req: SubscribeRequest) -> AsyncIterator[SubscribeEvent]:
        """A live subscription: an empty first event, then every message delivered to it."""
        names = self._names(ctx)
        topic = self._stored(names, req.topic)
        with shown_errors(names, {topic: req.topic}):
            sub = await self._backend.subscribe(topic, req.group)
        try:
            yield SubscribeEvent()
            # A drop only happens while the buffer is full, so a message always follows it:
            # the count sent with each message is never stale for long.
            async for message in sub:
                if names is not None and message.topic != req.topic:
                    message = msgspec.structs.replace(message, topic=req.topic)
                yield SubscribeEvent(message, sub.dropped)
        finally:
            await sub.close()
