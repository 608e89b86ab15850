"""Structured logs: JSON lines with the trace id of the call being handled."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from micro import Context
from micro.context import _current
from micro.debug.logs import JsonFormatter, configure_json_logging, current_trace_id, wants_json
from micro.debug.trace import SpanRecorder, tracing_middleware

TID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_formatter_outside_a_call_has_no_trace_id() -> None:
    record = logging.LogRecord("app.x", logging.WARNING, __file__, 1, "hi %s", ("there",), None)
    record.created = 1_700_000_000.25
    line = json.loads(JsonFormatter("A").format(record))
    assert line == {
        "time": "2023-11-14T22:13:20.250Z",
        "level": "WARNING",
        "service": "A",
        "logger": "app.x",
        "message": "hi there",
    }


def test_formatter_includes_the_traceback_of_an_exception() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        record = logging.LogRecord("a", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = JsonFormatter("A").format(record)
    assert "\n" not in text  # one line, whatever the message holds
    assert "ValueError: bad" in json.loads(text)["error"]


async def test_log_lines_inside_a_traced_call_carry_its_trace_id() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("A"))
    logger = logging.getLogger("tests.debug.traced")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    async def serve(ctx: Context, req: Any) -> Any:
        logger.info("handling")
        return None

    ctx = Context({"traceparent": f"00-{TID}-00f067aa0ba902b7-01"}, service="A", endpoint="H.Do")
    token = _current.set(ctx)  # what the RPC server does for each call
    try:
        await tracing_middleware(SpanRecorder())(serve)(ctx, None)
    finally:
        _current.reset(token)
        logger.removeHandler(handler)
    assert current_trace_id() == ""
    line = json.loads(out.getvalue())
    assert line["trace_id"] == TID and line["message"] == "handling" and line["service"] == "A"


def test_configure_installs_a_json_handler_on_the_root_logger() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    out = io.StringIO()
    try:
        configure_json_logging("svc", "warning", logging.StreamHandler(out))
        logging.getLogger("tests.debug.cfg").info("dropped")
        logging.getLogger("tests.debug.cfg").warning("kept")
        assert root.level == logging.WARNING
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
        root.setLevel(level)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(x["service"], x["message"]) for x in lines] == [("svc", "kept")]


def test_json_is_chosen_by_the_environment() -> None:
    assert wants_json({"MICRO_LOG_FORMAT": "json"}) and wants_json({"MICRO_LOG_FORMAT": "JSON"})
    assert not wants_json({}) and not wants_json({"MICRO_LOG_FORMAT": "text"})
