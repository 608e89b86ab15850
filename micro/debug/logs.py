"""Structured logs: one JSON object per line, with the trace id of the call being handled.

``{"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "service": "A", "logger": "a",
"message": "...", "trace_id": "4bf9..."}``; ``trace_id`` is present only inside a traced
call, ``error`` (the formatted traceback) only when the record carries an exception.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgspec

from ..context import current_context
from .trace import HEADER, parse_traceparent

__all__ = ["JsonFormatter", "configure_json_logging", "current_trace_id", "wants_json"]

_encode = msgspec.json.Encoder().encode


def current_trace_id() -> str:
    """The trace id of the call being handled, or ``""``."""
    ctx = current_context()
    if ctx is None:
        return ""
    parsed = parse_traceparent(ctx.metadata.get(HEADER))
    return parsed.trace_id if parsed is not None else ""


class JsonFormatter(logging.Formatter):
    """Formats records as JSON lines for ``service``."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object, no newline inside."""
        seconds = int(record.created)
        millis = int((record.created - seconds) * 1000)
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if trace_id := current_trace_id():
            line["trace_id"] = trace_id
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["error"] = record.exc_text
        return _encode(line).decode()


def wants_json(env: dict[str, str] | None = None) -> bool:
    """True when ``MICRO_LOG_FORMAT`` is ``json`` (the runtime sets it for the services it
    runs unless their spec says otherwise)."""
    value = (env if env is not None else os.environ).get("MICRO_LOG_FORMAT", "")
    return value.strip().lower() == "json"


def configure_json_logging(
    service: str, level: str | int = "INFO", handler: logging.Handler | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one writing JSON lines (on stderr unless
    ``handler`` is given) at ``level``; returns the handler."""
    target = handler if handler is not None else logging.StreamHandler()
    target.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(target)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return target
