"""JetStream storage details of :mod:`micro.events.nats`: names, the envelope, reads."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import msgspec
from nats.js.errors import NotFoundError
from nats.js.manager import JetStreamManager

from . import Event

__all__ = ["Envelope", "StreamNames", "TopicCache", "decode", "encode", "load", "seq_at"]

TOPIC_KEY = "micro.topic"
"""Stream metadata entry holding the topic name."""


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    """A stored event's payload: JetStream keeps the sequence, the rest is here.

    ``through`` is the sum of body sizes of the topic's events up to and including this one,
    so the body bytes of any stored range are a subtraction.
    """

    timestamp: float
    through: int
    key: str | None
    deliver_at: float | None
    metadata: dict[str, str]
    body: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode(envelope: Envelope) -> bytes:
    """The payload of ``envelope``."""
    return _encoder.encode(envelope)


def decode(payload: bytes | None) -> Envelope:
    """The envelope in ``payload`` (an empty one for a payload that is not an envelope)."""
    try:
        return _decoder.decode(payload or b"")
    except msgspec.DecodeError:
        return Envelope(0.0, 0, None, None, {}, payload or b"")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class StreamNames:
    """How topics and groups map to JetStream names (topic names may hold ``.`` and empty
    tokens, which stream, consumer and subject tokens cannot, so they are hashed)."""

    stream_prefix: str
    subject_prefix: str

    def stream(self, topic: str) -> str:
        """The stream of ``topic``."""
        return f"{self.stream_prefix}_{_digest(topic)}"

    def subject(self, topic: str) -> str:
        """The subject events of ``topic`` are published on."""
        return f"{self.subject_prefix}.{_digest(topic)}"

    def durable(self, group: str) -> str:
        """The durable consumer of ``group`` (in its topic's stream)."""
        return f"g_{_digest(group)}"

    @staticmethod
    def message_id(*parts: str) -> str:
        """A de-duplication id made of ``parts``."""
        return "micro." + _digest("\x00".join(parts))


@dataclass
class TopicCache:
    """What the publisher knows of a topic's tail: the next publish builds on it."""

    stream: str
    subject: str
    last_seq: int = 0
    last_ts: float = 0.0
    through: int = 0
    loaded: bool = False
    atomic: bool = False  # the stream takes atomic batches (nats-server 2.12+)


async def load(jsm: JetStreamManager, stream: str, seq: int) -> Envelope | None:
    """The envelope of event ``seq`` of ``stream``, None if it is not stored."""
    try:
        raw = await jsm.get_msg(stream, seq)
    except NotFoundError:
        return None
    return decode(raw.data)


async def load_events(
    jsm: JetStreamManager, topic: str, stream: str, first: int, last: int
) -> list[Event]:
    """Stored events ``first..last`` of ``stream`` (missing ones skipped), 32 at a time."""
    events: list[Event] = []
    for chunk in range(first, last + 1, 32):
        seqs = range(chunk, min(last, chunk + 31) + 1)
        envs = await asyncio.gather(*(load(jsm, stream, s) for s in seqs))
        for seq, env in zip(seqs, envs, strict=True):
            if env is not None:
                events.append(to_event(topic, seq, env))
    return events


def to_event(topic: str, seq: int, env: Envelope, deliveries: int = 0) -> Event:
    """The :class:`~micro.events.Event` stored as ``env`` at ``seq``."""
    return Event(topic, seq, env.timestamp, env.body, env.metadata, env.key, deliveries)


async def seq_at(jsm: JetStreamManager, stream: str, first: int, last: int, ts: float) -> int:
    """The first sequence in ``first..last`` stamped at or after ``ts`` (``last + 1`` if
    none): a binary search, as timestamps never go backwards within a topic."""
    lo, hi = first, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        env = await load(jsm, stream, mid)
        if env is None or env.timestamp < ts:
            lo = mid + 1
        else:
            hi = mid
    return lo


async def through_before(jsm: JetStreamManager, stream: str, seq: int) -> int:
    """Body bytes of every event before ``seq`` (0 for none or a missing event)."""
    env = await load(jsm, stream, seq)
    return 0 if env is None else env.through - len(env.body)
