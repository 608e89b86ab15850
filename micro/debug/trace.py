"""Distributed tracing: W3C ``traceparent`` in call metadata, spans kept per service.

A call carrying ``traceparent`` in its metadata continues that trace; one without (or with a
malformed one) starts a new trace. The middleware records a :class:`~micro.debug.Span` for
each call handled and puts the span's own ``traceparent`` into ``ctx.metadata``, which the
calls made by the handler inherit: they become its children.
"""

from __future__ import annotations

import collections
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..errors import MicroError
from . import DEBUG_PREFIX, MAX_SPANS, Span
from .stats import outcome_of

if TYPE_CHECKING:
    from ..context import Context
    from ..service.endpoint import HandlerFunc, Middleware

__all__ = [
    "HEADER",
    "OpenSpan",
    "SpanExporter",
    "SpanRecorder",
    "TraceParent",
    "format_traceparent",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "span",
    "tracing_middleware",
]

HEADER = "traceparent"  # the metadata key (and HTTP header) carrying the trace context
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_V00 = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}").fullmatch
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_STATUS = ("ok", "error", "client_error")
_randbytes = random.randbytes
_perf = time.perf_counter
_now = time.time


class TraceParent(NamedTuple):
    """The parsed fields of a ``traceparent`` value."""

    trace_id: str
    span_id: str
    flags: str = "01"


def _parse(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, span_id, flags)`` of a valid ``traceparent``, else ``None``."""
    if not value:
        return None
    if len(value) == 55 and _V00(value) is not None:  # the common case, checked cheaply
        trace_id, span_id = value[3:35], value[36:52]
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return trace_id, span_id, value[53:]
    if len(value) > 512:
        return None
    m = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The trace context in ``value``, or ``None`` when it is absent or malformed (unknown
    version ``ff``, wrong lengths, upper case, all-zero ids, trailing data on version 00)."""
    parsed = _parse(value)
    return TraceParent(*parsed) if parsed is not None else None


def format_traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    """``00-<trace id>-<span id>-<flags>``."""
    return f"00-{trace_id}-{span_id}-{flags}"


def new_trace_id() -> str:
    """A random, non-zero 128-bit trace id in 32 lower-case hex digits."""
    found = _randbytes(16).hex()
    return found if found != _ZERO_TRACE else new_trace_id()


def new_span_id() -> str:
    """A random, non-zero 64-bit span id in 16 lower-case hex digits."""
    found = _randbytes(8).hex()
    return found if found != _ZERO_SPAN else new_span_id()


class SpanExporter(Protocol):
    """Somewhere finished spans go besides the recorder (OpenTelemetry, ...)."""

    def export(self, span: Span) -> None:
        """Hand over one finished span; must not block."""
        ...


class SpanRecorder:
    """The last ``capacity`` spans recorded by one service (a ring buffer)."""

    def __init__(self, capacity: int = MAX_SPANS, exporter: SpanExporter | None = None) -> None:
        if capacity < 1:
            raise ValueError("a span recorder needs a capacity of at least 1")
        self.capacity = capacity
        self.exporter = exporter
        self._spans: collections.deque[Span] = collections.deque(maxlen=capacity)

    def record(self, span: Span) -> None:
        """Keep ``span`` (dropping the oldest when full) and pass it to the exporter."""
        self._spans.append(span)
        if self.exporter is not None:
            self.exporter.export(span)

    def trace(self, trace_id: str) -> list[Span]:
        """The kept spans of ``trace_id``, oldest first."""
        return [s for s in self._spans if s.trace_id == trace_id]

    def recent(self, limit: int = 100) -> list[Span]:
        """The last ``limit`` spans, newest first."""
        out: list[Span] = []
        for s in reversed(self._spans):
            if len(out) >= limit:
                break
            out.append(s)
        return out

    def __len__(self) -> int:
        return len(self._spans)


class OpenSpan:
    """A span being timed; :func:`span` yields it."""

    __slots__ = ("error", "flags", "outcome", "parent", "span_id", "trace_id")

    def __init__(self, parent: TraceParent | None) -> None:
        self.parent = parent
        self.trace_id = parent.trace_id if parent is not None else new_trace_id()
        self.flags = parent.flags if parent is not None else "01"
        self.span_id = new_span_id()
        self.outcome = 0
        self.error = ""

    @property
    def traceparent(self) -> str:
        """This span as the parent of calls made within it."""
        return format_traceparent(self.trace_id, self.span_id, self.flags)


@contextmanager
def span(
    recorder: SpanRecorder, service: str, endpoint: str, traceparent: str | None
) -> Iterator[OpenSpan]:
    """Time a span that continues ``traceparent`` (or starts a trace) and record it on exit,
    with the exception that ended it, if any. For code that is not a handler (the gateway)."""
    opened = OpenSpan(parse_traceparent(traceparent))
    start, started = time.time(), _perf()
    try:
        yield opened
    except BaseException as exc:
        opened.outcome, opened.error = outcome_of(exc), _describe(exc)
        raise
    finally:
        parent = opened.parent
        recorder.record(
            Span(
                trace_id=opened.trace_id,
                span_id=opened.span_id,
                parent_id=parent.span_id if parent is not None else "",
                service=service,
                endpoint=endpoint,
                start=start,
                duration=_perf() - started,
                status=_STATUS[opened.outcome],
                error=opened.error,
            )
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, MicroError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def tracing_middleware(recorder: SpanRecorder) -> Middleware:
    """Middleware recording a span per traced call and setting ``ctx.metadata["traceparent"]``
    to it for the calls the handler makes. A call is traced when its caller sent a
    ``traceparent``: traces start at the edge (the gateway starts one per HTTP request) or
    with any caller that passes one; untraced RPC pays one dict lookup. ``Debug.*`` calls
    are never traced."""
    record = recorder.record

    def wrap(call: HandlerFunc) -> HandlerFunc:
        async def traced(ctx: Context, request: Any) -> Any:
            metadata = ctx.metadata
            header = metadata.get(HEADER)
            endpoint = ctx.endpoint
            if header is None or endpoint.startswith(DEBUG_PREFIX):
                return await call(ctx, request)
            parent = _parse(header)
            if parent is None:  # malformed: start a new trace rather than fail the call
                trace_id, parent_id, flags = new_trace_id(), "", "01"
            else:
                trace_id, parent_id, flags = parent
            span_id = _randbytes(8).hex()
            if span_id == _ZERO_SPAN:
                span_id = new_span_id()
            metadata[HEADER] = f"00-{trace_id}-{span_id}-{flags}"
            start, started = _now(), _perf()
            outcome, error = 0, ""
            try:
                return await call(ctx, request)
            except BaseException as exc:
                outcome, error = outcome_of(exc), _describe(exc)
                raise
            finally:
                record(
                    Span(
                        trace_id,
                        span_id,
                        ctx.service,
                        endpoint,
                        start,
                        _perf() - started,
                        parent_id,
                        _STATUS[outcome],
                        error,
                    )
                )

        return traced

    return wrap
