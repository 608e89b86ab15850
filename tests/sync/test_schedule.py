"""Cron expression parsing and tick arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from micro.errors import MicroError
from micro.sync.cron import parse


def ts(text: str) -> float:
    """Seconds since the epoch of a UTC ``YYYY-MM-DD HH:MM`` time."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("expr", "at", "prev", "next"),
    [
        ("* * * * *", "2026-03-04 10:17", "2026-03-04 10:17", "2026-03-04 10:18"),
        ("*/15 * * * *", "2026-03-04 10:17", "2026-03-04 10:15", "2026-03-04 10:30"),
        ("0 9-17/4 * * *", "2026-03-04 10:17", "2026-03-04 09:00", "2026-03-04 13:00"),
        ("5,35 0 * * *", "2026-03-04 00:20", "2026-03-04 00:05", "2026-03-04 00:35"),
        ("0 0 1 * *", "2026-03-04 10:17", "2026-03-01 00:00", "2026-04-01 00:00"),
        ("30 8 * * mon-fri", "2026-03-07 12:00", "2026-03-06 08:30", "2026-03-09 08:30"),
        ("0 12 * * 7", "2026-03-04 10:17", "2026-03-01 12:00", "2026-03-08 12:00"),
        ("0 0 29 feb *", "2026-03-04 10:17", "2024-02-29 00:00", "2028-02-29 00:00"),
        ("0 0 13 * fri", "2026-03-04 10:17", "2026-02-27 00:00", "2026-03-06 00:00"),
        ("0 6 1/10 jan-mar *", "2026-03-04 10:17", "2026-03-01 06:00", "2026-03-11 06:00"),
        ("@hourly", "2026-03-04 10:17", "2026-03-04 10:00", "2026-03-04 11:00"),
        ("@daily", "2026-03-04 10:17", "2026-03-04 00:00", "2026-03-05 00:00"),
        ("@weekly", "2026-03-04 10:17", "2026-03-01 00:00", "2026-03-08 00:00"),
        ("@yearly", "2026-03-04 10:17", "2026-01-01 00:00", "2027-01-01 00:00"),
    ],
)
def test_cron_ticks(expr: str, at: str, prev: str, next: str) -> None:
    schedule = parse(expr)
    assert iso(schedule.prev(ts(at) + 30)) == prev
    assert iso(schedule.next(ts(at) + 30)) == next


def test_tick_on_the_minute_is_due() -> None:
    schedule = parse("*/5 * * * *")
    assert schedule.prev(ts("2026-03-04 10:15")) == ts("2026-03-04 10:15")
    assert schedule.next(ts("2026-03-04 10:15")) == ts("2026-03-04 10:20")


def test_every() -> None:
    schedule = parse("@every 30s")
    assert schedule.prev(1000.0) == 990.0 and schedule.next(1000.0) == 1020.0
    assert schedule.prev(990.0) == 990.0
    assert parse("@every 1h30m").next(0.0) == 5400.0


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("", "non-empty"),
        ("* * * *", "4 fields"),
        ("* * * * * *", "6 fields"),
        ("60 * * * *", "minute field"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day-of-month field"),
        ("* * * 13 *", "month field"),
        ("* * * * 8", "day-of-week field"),
        ("*/0 * * * *", "minute field"),
        ("5-1 * * * *", "minute field"),
        ("x * * * *", "minute field"),
        ("* * * foo *", "month field"),
        ("* * * * mon-", "day-of-week field"),
        ("0 0 31 feb *", "never matches"),
        ("@fortnightly", "unknown"),
        ("@every", "malformed"),
        ("@every 10x", "malformed"),
        ("@every 100ms", "shorter than 1s"),
    ],
)
def test_malformed_expressions_name_the_field(expr: str, words: str) -> None:
    with pytest.raises(MicroError) as err:
        parse(expr)
    assert err.value.code == "bad_request" and words in err.value.detail
