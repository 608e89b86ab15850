"""Export spans to an OpenTelemetry collector over OTLP, when the SDK is installed.

Export is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set *and* ``opentelemetry-sdk`` and
``opentelemetry-exporter-otlp-proto-http`` are importable; they are not dependencies of
micro. When the variable is set but the packages are missing, one warning is logged and
spans are only kept in memory. Spans go through the SDK's ``BatchSpanProcessor``, so
exporting never blocks a call.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from . import Span

__all__ = ["OtlpExporter", "exporter_from_env"]

log = logging.getLogger("micro.debug")

ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
_warned = False


def exporter_from_env(service: str, env: dict[str, str] | None = None) -> OtlpExporter | None:
    """An exporter for ``service`` when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the
    OpenTelemetry packages import; else ``None`` (logging once why, if the variable is set)."""
    global _warned
    endpoint = (env if env is not None else os.environ).get(ENV, "")
    if not endpoint:
        return None
    try:
        return OtlpExporter(service, endpoint)
    except ImportError as exc:
        if not _warned:
            _warned = True
            log.warning(
                "%s is set but OpenTelemetry export is unavailable (%s): install "
                "opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http; spans stay "
                "in memory only",
                ENV,
                exc,
            )
        return None


class OtlpExporter:
    """Converts :class:`~micro.debug.Span` to SDK spans and batches them to OTLP/HTTP."""

    def __init__(self, service: str, endpoint: str) -> None:
        # Imported by name: optional packages, absent from micro's dependencies.
        otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        resources = importlib.import_module("opentelemetry.sdk.resources")
        sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
        export = importlib.import_module("opentelemetry.sdk.trace.export")
        api = importlib.import_module("opentelemetry.trace")
        self._readable = sdk_trace.ReadableSpan
        self._context = api.SpanContext
        self._flags = api.TraceFlags
        self._kind = api.SpanKind.SERVER
        self._status = api.Status
        self._codes = api.StatusCode
        self._resource = resources.Resource.create({"service.name": service})
        base = endpoint.rstrip("/")
        url = base if base.endswith("/v1/traces") else f"{base}/v1/traces"
        self._processor: Any = export.BatchSpanProcessor(otlp.OTLPSpanExporter(endpoint=url))

    def export(self, span: Span) -> None:
        """Queue ``span`` for the batch processor."""
        context = self._context(
            int(span.trace_id, 16), int(span.span_id, 16), False, self._flags(1)
        )
        parent = (
            self._context(int(span.trace_id, 16), int(span.parent_id, 16), True, self._flags(1))
            if span.parent_id
            else None
        )
        start = int(span.start * 1e9)
        status = (
            self._status(self._codes.OK)
            if span.status != "error"
            else self._status(self._codes.ERROR, span.error)
        )
        self._processor.on_end(
            self._readable(
                name=span.endpoint,
                context=context,
                parent=parent,
                resource=self._resource,
                kind=self._kind,
                start_time=start,
                end_time=start + int(span.duration * 1e9),
                status=status,
                attributes={"micro.service": span.service, "micro.status": span.status},
            )
        )

    def shutdown(self) -> None:
        """Flush queued spans and stop the processor's thread."""
        self._processor.shutdown()
