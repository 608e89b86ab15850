"""Settings of an events backend and of a consumer, validated once; input checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import MicroError, bad_request, too_large
from . import (
    DEDUPE_WINDOW,
    MAX_BODY,
    MAX_FETCH,
    MAX_KEY,
    MAX_MESSAGE_ID,
    MAX_METADATA,
    MAX_METADATA_KEY,
    MAX_METADATA_VALUE,
    MAX_READ,
    NAME_PATTERN,
    Retention,
    Start,
)

__all__ = [
    "ConsumeOptions",
    "Options",
    "check_delay",
    "check_fetch",
    "check_limit",
    "check_name",
    "check_publish",
    "check_retention",
    "check_start",
]

ID = "events"
MAX_SECONDS = 366 * 86400.0  # ack wait, nack delay: at most a year


@dataclass(frozen=True)
class Options:
    """How a backend behaves: body limit, de-duplication window, default retention, how
    often waiting consumers re-read the clock (``poll_interval``, real seconds) and how often
    retention runs (``purge_interval``, real seconds)."""

    max_body: int = MAX_BODY
    dedupe_window: float = DEDUPE_WINDOW
    retention: Retention = field(default_factory=Retention)
    poll_interval: float = 1.0
    purge_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.max_body < 1:
            raise ValueError("max_body must be at least 1 byte")
        if not 0 <= self.dedupe_window <= MAX_SECONDS:
            raise ValueError("dedupe_window must be between 0 and a year")
        if not 0 < self.poll_interval <= 60:
            raise ValueError("poll_interval must be in (0, 60] seconds")
        if not 0 < self.purge_interval <= 86400:
            raise ValueError("purge_interval must be in (0, 86400] seconds")
        try:
            check_retention(self.retention)
        except MicroError as exc:
            raise ValueError(exc.detail) from None


@dataclass(frozen=True)
class ConsumeOptions:
    """What :meth:`~micro.events.Events.consume` was asked for, validated."""

    topic: str
    group: str
    start: Start = "new"
    auto_ack: bool = True
    ack_wait: float = 30.0
    max_deliver: int = 5
    dead_letter_topic: str = ""
    max_ack_pending: int = 1000

    def __post_init__(self) -> None:
        check_name(self.topic, "topic")
        check_name(self.group, "group")
        check_start(self.start)
        if not isinstance(self.auto_ack, bool):
            raise bad_request(ID, "auto_ack must be true or false")
        if not _number(self.ack_wait) or not 0 < self.ack_wait <= MAX_SECONDS:
            raise bad_request(ID, f"ack_wait must be in (0, {MAX_SECONDS:.0f}] seconds")
        if not _integer(self.max_deliver) or not 1 <= self.max_deliver <= 10_000:
            raise bad_request(ID, "max_deliver must be between 1 and 10000")
        if not _integer(self.max_ack_pending) or not 1 <= self.max_ack_pending <= 100_000:
            raise bad_request(ID, "max_ack_pending must be between 1 and 100000")
        dead = self.dead_letter_topic or f"{self.topic}.dead"
        check_name(dead, "dead_letter_topic")
        if dead == self.topic:
            raise bad_request(ID, "dead_letter_topic must differ from the topic")
        object.__setattr__(self, "dead_letter_topic", dead)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_name(name: object, what: str) -> str:
    """A valid topic or group name, else ``bad_request`` naming ``what``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise bad_request(
            ID, f"{what} {name!r} must be 1-255 characters of letters, digits, '_', '.', '-'"
        )
    return name


def check_start(start: object) -> None:
    """``"new"``, ``"first"``, a sequence >= 1 or a finite time, else ``bad_request``."""
    if start in ("new", "first"):
        return
    if _integer(start):
        assert isinstance(start, int)
        if start < 1:
            raise bad_request(ID, f"start sequence {start} must be at least 1")
        return
    if isinstance(start, float) and math.isfinite(start) and start >= 0:
        return
    raise bad_request(
        ID, f"start {start!r} must be 'new', 'first', a sequence (int) or a time (float)"
    )


def check_publish(
    options: Options,
    topic: str,
    body: object,
    metadata: object,
    key: object,
    message_id: object,
    deliver_at: object,
) -> None:
    """Validate a publish; ``too_large`` for an oversized body, else ``bad_request``."""
    check_name(topic, "topic")
    if not isinstance(body, bytes):
        raise bad_request(ID, f"body must be bytes, not {type(body).__name__}")
    if len(body) > options.max_body:
        raise too_large(ID, f"body of {len(body)} bytes exceeds the limit of {options.max_body}")
    if not isinstance(metadata, dict):
        raise bad_request(ID, "metadata must be a mapping of strings to strings")
    if len(metadata) > MAX_METADATA:
        raise bad_request(ID, f"metadata has {len(metadata)} entries; the limit is {MAX_METADATA}")
    for name, value in metadata.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_METADATA_KEY:
            raise bad_request(ID, f"metadata name {name!r} must be 1-{MAX_METADATA_KEY} characters")
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise bad_request(
                ID, f"metadata {name!r} must be a string of at most {MAX_METADATA_VALUE} characters"
            )
    _check_text(key, "key", MAX_KEY)
    _check_text(message_id, "message_id", MAX_MESSAGE_ID)
    if deliver_at is not None and (not _number(deliver_at) or float(deliver_at) < 0):  # type: ignore[arg-type]
        raise bad_request(ID, "deliver_at must be a finite wall-clock time")


def _check_text(value: object, what: str, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise bad_request(ID, f"{what} must be a string of 1-{limit} characters")


def check_delay(delay: object) -> float:
    """A nack delay: finite, between 0 and a year."""
    if not _number(delay) or not 0 <= float(delay) <= MAX_SECONDS:  # type: ignore[arg-type]
        raise bad_request(ID, f"delay must be between 0 and {MAX_SECONDS:.0f} seconds")
    return float(delay)  # type: ignore[arg-type]


def check_limit(limit: object) -> int:
    """A read limit: 1..MAX_READ."""
    if not _integer(limit) or not 1 <= limit <= MAX_READ:  # type: ignore[operator]
        raise bad_request(ID, f"limit must be between 1 and {MAX_READ}")
    return limit  # type: ignore[return-value]


def check_fetch(max_events: object, timeout: object) -> None:
    """Fetch arguments: 1..MAX_FETCH events, a timeout >= 0 or None."""
    if not _integer(max_events) or not 1 <= max_events <= MAX_FETCH:  # type: ignore[operator]
        raise bad_request(ID, f"max_events must be between 1 and {MAX_FETCH}")
    if timeout is not None and (not _number(timeout) or float(timeout) < 0):  # type: ignore[arg-type]
        raise bad_request(ID, "timeout must be a number of seconds >= 0, or None")


def check_retention(retention: Retention) -> None:
    """Every limit positive (or unset)."""
    age, count, size = retention.max_age, retention.max_events, retention.max_bytes
    if age is not None and (not _number(age) or age <= 0):
        raise bad_request(ID, "max_age must be a positive number of seconds")
    if count is not None and (not _integer(count) or count < 1):
        raise bad_request(ID, "max_events must be a positive integer")
    if size is not None and (not _integer(size) or size < 1):
        raise bad_request(ID, "max_bytes must be a positive integer")
