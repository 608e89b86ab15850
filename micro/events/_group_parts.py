"""The parts a consumer group is built from: what it needs of the engine and of its
members, its records of waiting and in-flight events, and the line members wait in."""

from __future__ import annotations

import asyncio
from typing import Protocol

from ._log import Record, TopicState
from ._options import ConsumeOptions

__all__ = ["Delivery", "Host", "Member", "Ticket", "Waiting"]


class Member(Protocol):
    """What a group needs of a consumer."""

    options: ConsumeOptions
    held: dict[int, int]  # sequence -> delivery count of the events it holds unacked


class Host(Protocol):
    """What a group needs of the engine: records, persistence, dead-lettering."""

    async def record(self, topic: TopicState, seq: int) -> Record | None:
        """The stored record ``seq`` (None when purged)."""
        ...

    async def read_records(self, topic: TopicState, seq: int, limit: int) -> list[Record]:
        """Up to ``limit`` stored records from ``seq`` on."""
        ...

    def persist_cursor(self, topic: str, group: str, cursor: int) -> None:
        """Record the group's cursor."""
        ...

    def persist_pending(
        self, topic: str, group: str, seq: int, deliveries: int, due: float | None
    ) -> None:
        """Record an unsettled event (``due`` None: deliverable at once after a restart)."""
        ...

    def persist_settled(self, topic: str, group: str, seq: int) -> None:
        """Forget an unsettled event."""
        ...

    async def dead_letter(
        self, record: Record, topic: str, group: str, deliveries: int, dead_topic: str
    ) -> None:
        """Append ``record`` to ``dead_topic`` durably, with dead-letter metadata."""
        ...


class Waiting:
    """An unsettled event not in flight: its deliveries so far, when it is due, its key."""

    __slots__ = ("deliveries", "due", "key", "seq")

    def __init__(self, seq: int, deliveries: int, due: float | None, key: str | None) -> None:
        self.seq = seq
        self.deliveries = deliveries
        self.due = due
        self.key = key


class Delivery:
    """An event in flight at a member."""

    __slots__ = ("deliveries", "key", "member", "seq")

    def __init__(self, seq: int, member: Member, deliveries: int, key: str | None) -> None:
        self.seq = seq
        self.member = member
        self.deliveries = deliveries
        self.key = key


class Ticket:
    """A member's place in line for a group's events, held while one fetch waits; its
    ``future`` resolves when the group is woken."""

    __slots__ = ("future", "member")

    def __init__(self, future: asyncio.Future[None], member: Member) -> None:
        self.future = future
        self.member = member

    @property
    def full(self) -> bool:
        """True when the member holds all the unacked events it may."""
        options = self.member.options
        return not options.auto_ack and len(self.member.held) >= options.max_ack_pending
