"""Cron schedules: 5-field expressions and ``@`` shortcuts, evaluated in UTC.

Fields are ``minute hour day-of-month month day-of-week``; each is ``*`` or a comma list of
``n``, ``a-b``, ``*/s``, ``a-b/s`` or ``a/s`` (``a`` to the field's maximum, step ``s``).
Months and weekdays also take names (``jan``..``dec``, ``sun``..``sat``); weekday ``7`` is
Sunday. As in Vixie cron, when both day fields are restricted (neither is ``*``) a day
matches if *either* does. Shortcuts: ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``,
``@monthly``, ``@yearly`` (``@annually``), and ``@every <duration>`` (``30s``, ``5m``,
``1h30m``; at least one second) whose ticks are the multiples of the duration since the
Unix epoch, so every replica agrees on them.
"""

from __future__ import annotations

import abc
import calendar
import math
import re
from datetime import UTC, date, datetime, timedelta

from ..errors import bad_request
from . import ID

__all__ = ["CronSchedule", "EverySchedule", "Schedule", "parse"]

_SHORTCUTS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, low, high, names
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SEARCH_DAYS = 366 * 8 + 2  # a Feb 29 recurs within 8 years


class Schedule(abc.ABC):
    """When a job is due: ticks in seconds since the epoch."""

    expression: str

    @abc.abstractmethod
    def prev(self, t: float) -> float:
        """The latest tick at or before ``t``."""
        ...

    @abc.abstractmethod
    def next(self, t: float) -> float:
        """The earliest tick after ``t``."""
        ...


class EverySchedule(Schedule):
    """Every ``period`` seconds, aligned to the epoch."""

    def __init__(self, expression: str, period: float) -> None:
        self.expression, self.period = expression, period

    def prev(self, t: float) -> float:
        return math.floor(t / self.period) * self.period

    def next(self, t: float) -> float:
        return self.prev(t) + self.period


class CronSchedule(Schedule):
    """A 5-field cron expression."""

    def __init__(self, expression: str, fields: list[set[int]], stars: tuple[bool, bool]):
        self.expression = expression
        self.minutes, self.hours, self.doms, self.months, dows = fields
        self.dows = {d % 7 for d in dows}
        self.dom_star, self.dow_star = stars
        if self.next(0.0) < 0:
            raise bad_request(ID, f"cron expression {expression!r} never matches a day")

    def _day(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom, dow = d.day in self.doms, (d.weekday() + 1) % 7 in self.dows
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def _at(self, d: date, minute_of_day: int) -> float:
        day = datetime(d.year, d.month, d.day, tzinfo=UTC)
        return day.timestamp() + minute_of_day * 60

    def _times(self) -> list[int]:
        return sorted(h * 60 + m for h in self.hours for m in self.minutes)

    def prev(self, t: float) -> float:
        at = datetime.fromtimestamp(t, UTC)
        limit = at.hour * 60 + at.minute
        times = self._times()
        d = at.date()
        for _ in range(_SEARCH_DAYS):
            if self._day(d):
                fit = [m for m in times if m <= limit]
                if fit:
                    return self._at(d, fit[-1])
            d, limit = d - timedelta(days=1), 24 * 60
        return -1.0

    def next(self, t: float) -> float:
        at = datetime.fromtimestamp(t, UTC)
        limit = at.hour * 60 + at.minute  # strictly after this minute
        times = self._times()
        d = at.date()
        for _ in range(_SEARCH_DAYS):
            if self._day(d):
                fit = [m for m in times if m > limit]
                if fit:
                    return self._at(d, fit[0])
            d, limit = d + timedelta(days=1), -1
        return -1.0


def _number(field: str, text: str, names: dict[str, int]) -> int:
    value = names.get(text.lower())
    if value is not None:
        return value
    if not text.isdigit():
        raise bad_request(ID, f"cron {field} field: {text!r} is not a number")
    return int(text)


def _field(spec: tuple[str, int, int, dict[str, int]], text: str) -> set[int]:
    field, low, high, names = spec
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            step = _number(field, step_text, {})
            if step < 1:
                raise bad_request(ID, f"cron {field} field: step must be at least 1")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _number(field, a, names), _number(field, b, names)
        else:
            start = _number(field, base, names)
            end = high if step_text else start
        if not low <= start <= high or not low <= end <= high:
            raise bad_request(ID, f"cron {field} field: {item!r} is outside {low}-{high}")
        if start > end:
            raise bad_request(ID, f"cron {field} field: range {item!r} runs backwards")
        values.update(range(start, end + 1, step))
    return values


def _every(expression: str, text: str) -> EverySchedule:
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise bad_request(ID, f"cron @every duration {text!r} is malformed (try 30s, 1h30m)")
    period = sum(float(n) * _UNITS[u] for n, u in parts)
    if period < 1:
        raise bad_request(ID, f"cron @every duration {text!r} is shorter than 1s")
    return EverySchedule(expression, period)


def parse(expression: str) -> Schedule:
    """The schedule ``expression`` describes; ``bad_request`` naming the bad field."""
    if not isinstance(expression, str) or not expression.strip():
        raise bad_request(ID, "cron expression must be a non-empty string")
    text = " ".join(expression.split())
    if text.startswith("@every"):
        return _every(expression, text.removeprefix("@every").strip())
    if text.startswith("@"):
        if text.lower() not in _SHORTCUTS:
            raise bad_request(ID, f"cron shortcut {text!r} is unknown")
        text = _SHORTCUTS[text.lower()]
    fields = text.split(" ")
    if len(fields) != 5:
        raise bad_request(
            ID,
            f"cron expression {expression!r} has {len(fields)} fields, not 5 "
            "(minute hour day-of-month month day-of-week)",
        )
    sets = [_field(spec, f) for spec, f in zip(_FIELDS, fields, strict=True)]
    return CronSchedule(expression, sets, (fields[2] == "*", fields[4] == "*"))
