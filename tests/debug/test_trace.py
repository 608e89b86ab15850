"""Tracing: traceparent parsing, the span recorder, the middleware and OTLP availability."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from micro import Context
from micro.debug import Span, otel
from micro.debug.trace import (
    SpanRecorder,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    span,
    tracing_middleware,
)
from micro.errors import conflict

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
VALID = f"00-{TID}-{SID}-01"


def test_parse_and_format_round_trip() -> None:
    parsed = parse_traceparent(VALID)
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id, parsed.flags) == (TID, SID, "01")
    assert format_traceparent(*parsed) == VALID
    assert parse_traceparent(f" {VALID} ") == parsed  # optional whitespace is trimmed
    future = parse_traceparent(f"cc-{TID}-{SID}-00-extra")  # a later version may extend it
    assert future is not None and future.flags == "00"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        f"ff-{TID}-{SID}-01",  # forbidden version
        f"00-{TID}-{SID}-01-extra",  # version 00 has exactly four fields
        f"00-{'0' * 32}-{SID}-01",  # all-zero trace id
        f"00-{TID}-{'0' * 16}-01",  # all-zero span id
        f"00-{TID.upper()}-{SID}-01",  # upper case is invalid
        f"00-{TID[:-1]}-{SID}-01",  # short trace id
        f"00-{TID}-{SID}0-01",  # long span id
        f"00-{TID}-{SID}-1",
        f"00_{TID}_{SID}_01",
        "00-" + "x" * 600,
    ],
)
def test_invalid_traceparents_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_new_ids_are_well_formed_and_distinct() -> None:
    ids = {new_trace_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 and int(i, 16) > 0 for i in ids)
    sid = new_span_id()
    assert len(sid) == 16 and parse_traceparent(format_traceparent(TID, sid)) is not None


def test_recorder_is_a_bounded_ring() -> None:
    rec = SpanRecorder(3)
    for i in range(5):
        rec.record(Span(TID if i % 2 else "a" * 32, f"{i:016x}", "s", "E.P", float(i), 0.1))
    assert len(rec) == 3
    assert [s.span_id for s in rec.trace(TID)] == [f"{3:016x}"]  # span 1 was dropped
    assert [s.span_id for s in rec.recent(2)] == [f"{4:016x}", f"{3:016x}"]
    with pytest.raises(ValueError):
        SpanRecorder(0)


async def test_middleware_continues_a_trace_and_exposes_the_new_span() -> None:
    rec = SpanRecorder()
    seen: dict[str, str] = {}

    async def handler(ctx: Context, req: Any) -> Any:
        seen.update(ctx.metadata)
        return "done"

    ctx = Context({"traceparent": VALID, "other": "x"}, service="A", endpoint="H.Do")
    assert await tracing_middleware(rec)(handler)(ctx, None) == "done"
    (recorded,) = rec.trace(TID)
    assert recorded.parent_id == SID and recorded.span_id != SID
    assert (recorded.service, recorded.endpoint, recorded.status) == ("A", "H.Do", "ok")
    assert recorded.duration >= 0 and recorded.start > 1.6e9
    assert seen["traceparent"] == format_traceparent(TID, recorded.span_id)  # handler's calls
    assert seen["other"] == "x"


@pytest.mark.parametrize("bad", ["", "nonsense", f"00-{'0' * 32}-{SID}-01"])
async def test_bad_traceparent_starts_a_new_trace(bad: str) -> None:
    rec = SpanRecorder()

    async def handler(ctx: Context, req: Any) -> Any:
        return ctx.metadata["traceparent"]

    got = await tracing_middleware(rec)(handler)(
        Context({"traceparent": bad}, service="A", endpoint="H.Do"), None
    )
    (recorded,) = rec.recent()
    assert recorded.parent_id == ""
    assert got == format_traceparent(recorded.trace_id, recorded.span_id)


async def test_failed_calls_record_their_error_and_debug_calls_are_skipped() -> None:
    rec = SpanRecorder()

    async def handler(ctx: Context, req: Any) -> Any:
        if req == "conflict":
            raise conflict("A", "taken")
        raise RuntimeError("boom")

    call = tracing_middleware(rec)(handler)
    for req in ("conflict", "crash"):
        with pytest.raises(Exception):  # noqa: B017 - re-raised unchanged
            await call(Context({"traceparent": VALID}, service="A", endpoint="H.Do"), req)
    client_err, err = reversed(rec.recent())
    assert (client_err.status, err.status) == ("client_error", "error")
    assert client_err.error == "A: taken (conflict, 409)" and err.error == "RuntimeError: boom"

    async def ok(ctx: Context, req: Any) -> Any:
        return None

    debug_ctx = Context({"traceparent": VALID}, service="A", endpoint="Debug.Trace")
    await tracing_middleware(rec)(ok)(debug_ctx, None)
    assert len(rec) == 2


async def test_calls_without_a_traceparent_are_not_traced() -> None:
    rec = SpanRecorder()

    async def ok(ctx: Context, req: Any) -> Any:
        return dict(ctx.metadata)

    seen = await tracing_middleware(rec)(ok)(Context(service="A", endpoint="H.Do"), None)
    assert seen == {} and len(rec) == 0


def test_span_helper_for_non_handlers() -> None:
    rec = SpanRecorder()
    with span(rec, "gateway", "POST /a/h/do", VALID) as opened:
        child = opened.traceparent
    (recorded,) = rec.recent()
    assert (recorded.trace_id, recorded.parent_id, recorded.service) == (TID, SID, "gateway")
    assert child == format_traceparent(TID, recorded.span_id)


def test_otlp_export_is_off_without_the_variable_and_unavailable_without_the_sdk(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert otel.exporter_from_env("A", env={}) is None
    monkeypatch.setattr(otel, "_warned", False)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    with caplog.at_level(logging.WARNING, logger="micro.debug"):
        assert otel.exporter_from_env("A", env=env) is None
        assert otel.exporter_from_env("B", env=env) is None
    warnings = [r for r in caplog.records if "OpenTelemetry export is unavailable" in r.message]
    assert len(warnings) == 1  # logged once per process


async def test_events_published_in_a_traced_call_carry_the_trace() -> None:
    from micro.context import _current
    from micro.events.memory import MemoryEvents

    events = MemoryEvents()
    token = _current.set(Context({"traceparent": VALID}, service="A", endpoint="H.Do"))
    try:
        await events.publish("orders", b"1")
    finally:
        _current.reset(token)
    await events.publish("orders", b"2")  # outside any call: no trace
    first, second = await events.read("orders")
    assert first.metadata == {"traceparent": VALID} and second.metadata == {}
    await events.close()
