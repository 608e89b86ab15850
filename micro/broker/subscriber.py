"""Typed subscribers: what ``Service.subscribe`` registers and runs.

A subscriber is an ``async def`` taking ``(ctx: Context, msg: T)`` or just ``(msg: T)``.
The body of each message is msgpack decoded into ``T`` with msgspec (publish with
:func:`encode_message` or :func:`publish_message`); two types are special: ``Message``
receives the whole message undecoded and ``bytes`` the raw body. ``ctx`` carries the
message's metadata and the topic as ``ctx.endpoint``, and is the current context while the
handler runs, so calls it makes pass the metadata on (trace ids, auth).

Messages are handled one at a time, in order. A message that does not decode into ``T``,
or whose handler raises, is logged with its topic and id and skipped; the subscription
goes on. Messages dropped because the handler fell behind (see :mod:`micro.broker`) are
logged as a warning, at most every 10 s. When the subscription ends or breaks (the broker
service restarted, the connection dropped), :func:`run_subscriber` subscribes again,
waiting 0.1 s, doubling up to 5 s between failed attempts; messages published meanwhile
are not seen (at most once).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..context import Context, _current
from ..errors import MicroError
from . import Broker, Message, Subscription, check_group, check_topic

__all__ = [
    "Subscriber",
    "encode_message",
    "publish_message",
    "run_subscriber",
    "start_subscriber",
]

log = logging.getLogger("micro.broker")

_encoder = msgspec.msgpack.Encoder()
_RETRY_FIRST = 0.1
_RETRY_MAX = 5.0
_DROP_LOG_EVERY = 10.0


def encode_message(obj: Any) -> bytes:
    """The msgpack body a typed subscriber decodes (Structs, dataclasses, dicts, ...)."""
    return _encoder.encode(obj)


async def publish_message(
    broker: Broker, topic: str, obj: Any, metadata: dict[str, str] | None = None
) -> str:
    """Publish ``obj`` encoded with :func:`encode_message`; return the message id."""
    return await broker.publish(topic, encode_message(obj), metadata)


@dataclass(frozen=True)
class Subscriber:
    """A subscriber registration: ``func`` handles messages of ``topic`` (as a member of
    queue ``group`` when given), decoded into ``type``; ``takes_context`` says whether
    ``func`` takes ``(ctx, msg)`` rather than ``(msg)``. Build it with :meth:`of`."""

    topic: str
    group: str | None
    func: Callable[..., Awaitable[Any]]
    type: Any
    takes_context: bool = True

    @classmethod
    def of(
        cls, topic: str, func: Callable[..., Awaitable[Any]], group: str | None = None
    ) -> Subscriber:
        """Inspect ``func`` and build its registration; ``ValueError`` for a bad topic or
        group, ``TypeError`` for a function of the wrong shape."""
        try:
            check_topic(topic)
            check_group(group)
        except MicroError as err:
            raise ValueError(err.detail) from None
        name = getattr(func, "__qualname__", repr(func))
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"subscriber {name} must be 'async def'")
        params = list(inspect.signature(func).parameters.values())
        if len(params) not in (1, 2):
            raise TypeError(
                f"subscriber {name} must take (ctx, msg) or (msg); "
                f"it takes {[p.name for p in params]}"
            )
        hint = typing.get_type_hints(func).get(params[-1].name)
        if hint is None:
            raise TypeError(f"subscriber {name} needs a type hint for its message parameter")
        if hint not in (Message, bytes):
            try:
                msgspec.json.schema(hint)  # refuses what msgspec cannot decode by itself
            except TypeError as exc:
                raise TypeError(f"subscriber {name}: cannot decode into {hint!r}: {exc}") from None
        return cls(topic, group, func, hint, takes_context=len(params) == 2)


def _decoder(sub: Subscriber) -> Callable[[Message], Any]:
    if sub.type is Message:
        return lambda message: message
    if sub.type is bytes:
        return lambda message: message.body
    decoder = msgspec.msgpack.Decoder(sub.type)
    return lambda message: decoder.decode(message.body)


async def _handle(sub: Subscriber, decode: Callable[[Message], Any], message: Message) -> None:
    try:
        value = decode(message)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning(
            "subscriber %s: message %s on %s does not decode into %s: %s",
            getattr(sub.func, "__qualname__", sub.func),
            message.id,
            message.topic,
            getattr(sub.type, "__name__", sub.type),
            exc,
        )
        return
    ctx = Context(dict(message.metadata), endpoint=message.topic)
    token = _current.set(ctx)
    try:
        if sub.takes_context:
            await sub.func(ctx, value)
        else:
            await sub.func(value)
    except Exception:
        log.exception(
            "subscriber %s failed on message %s of %s",
            getattr(sub.func, "__qualname__", sub.func),
            message.id,
            message.topic,
        )
    finally:
        _current.reset(token)


async def start_subscriber(broker: Broker, sub: Subscriber) -> asyncio.Task[None]:
    """Subscribe now, so messages published after this returns reach ``sub``, then run
    :func:`run_subscriber` on that subscription in a task; cancel the task to stop.

    If the broker cannot be reached (any error but ``bad_request``, which is raised), the
    task starts anyway and keeps trying to subscribe in the background (logged)."""
    subscription: Subscription | None = None
    try:
        subscription = await broker.subscribe(sub.topic, sub.group)
    except MicroError as err:
        if err.code == "bad_request":
            raise
        log.warning(
            "subscriber of %s: cannot subscribe yet (%s); retrying in the background",
            sub.topic,
            err.detail,
        )
    return asyncio.get_running_loop().create_task(
        run_subscriber(broker, sub, subscription=subscription),
        name=f"subscriber {sub.topic}",
    )


async def run_subscriber(
    broker: Broker, sub: Subscriber, *, subscription: Subscription | None = None
) -> None:
    """Subscribe ``sub`` (or use ``subscription``, already open on its topic) and handle
    every message until cancelled, subscribing again after the subscription ends or breaks.
    An invalid topic or group (``bad_request``) is raised."""
    decode = _decoder(sub)
    delay = _RETRY_FIRST
    while True:
        if subscription is None:
            try:
                subscription = await broker.subscribe(sub.topic, sub.group)
            except MicroError as err:
                if err.code == "bad_request":
                    raise
                log.warning(
                    "subscriber of %s: cannot subscribe (%s); retrying in %.1f s",
                    sub.topic,
                    err.detail,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
        reported, reported_at = 0, 0.0
        try:
            async for message in subscription:
                delay = _RETRY_FIRST
                await _handle(sub, decode, message)
                dropped = subscription.dropped
                if dropped > reported and time.monotonic() - reported_at >= _DROP_LOG_EVERY:
                    log.warning(
                        "subscriber of %s is too slow: %d message(s) dropped so far",
                        sub.topic,
                        dropped,
                    )
                    reported, reported_at = dropped, time.monotonic()
            log.warning("subscriber of %s: subscription ended; subscribing again", sub.topic)
        except MicroError as err:
            log.warning(
                "subscriber of %s: subscription broke (%s); subscribing again", sub.topic, err
            )
        finally:
            await subscription.close()
        subscription = None
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX)
