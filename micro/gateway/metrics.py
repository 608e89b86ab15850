"""Prometheus metrics of one gateway, served at ``GET /metrics`` in the text format.

Each gateway has its own :class:`prometheus_client.CollectorRegistry` (never the process-wide
one), so several gateways in one process count apart:

- ``micro_gateway_requests_total{service,endpoint,status}`` — requests answered;
- ``micro_gateway_request_seconds{service,endpoint}`` — a histogram of their latency;
- ``micro_gateway_errors_total{service,endpoint,code}`` — answers with an error, by the
  error's ``code`` (``not_found``, ``too_many_requests``...).

Labels never grow with what callers send: ``service`` and ``endpoint`` are those of an endpoint
the registry knows (the gateway checks before labelling), otherwise ``-`` (unknown services and
endpoints, malformed paths, ``/health`` and anything not routed to a service).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE", "UNKNOWN", "GatewayMetrics"]

UNKNOWN = "-"
CONTENT_TYPE = CONTENT_TYPE_LATEST
_MAX_CHILDREN = 10_000  # cached label children (the label sets are bounded anyway)
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """The counters and histogram of one gateway, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "micro_gateway_requests",
            "HTTP requests answered by the gateway",
            ("service", "endpoint", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "micro_gateway_request_seconds",
            "Time to answer an HTTP request, in seconds",
            ("service", "endpoint"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.errors = Counter(
            "micro_gateway_errors",
            "HTTP requests answered with an error, by error code",
            ("service", "endpoint", "code"),
            registry=self.registry,
        )

    def observe(
        self, service: str, endpoint: str, status: int, seconds: float, code: str | None
    ) -> None:
        """Count one answered request."""
        key = (service, endpoint, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: once per series
            if len(self._children) >= _MAX_CHILDREN:
                self._children.clear()
            children = self._children[key] = (
                self.requests.labels(service, endpoint, str(status)),
                self.latency.labels(service, endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)
        if code is not None:
            self.errors.labels(service, endpoint, code).inc()

    def render(self) -> bytes:
        """Everything in the Prometheus text exposition format."""
        return generate_latest(self.registry)
