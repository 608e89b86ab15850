"""Validation of checks: one clear ``bad_request`` naming the field."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

import msgspec

from ..errors import bad_request
from . import (
    MAX_INTERVAL,
    MAX_REQUEST,
    MAX_TIMEOUT,
    MIN_INTERVAL,
    NAME_PATTERN,
    Check,
)

__all__ = ["validate_check", "validate_name"]

_ID = "monitor"


def validate_name(name: str) -> None:
    """``bad_request`` unless ``name`` is a valid check name."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise bad_request(_ID, f"name {name!r} must match {NAME_PATTERN.pattern}")


def _positive(value: float, field: str, low: float, high: float) -> None:
    if not math.isfinite(value) or value < low or value > high:
        raise bad_request(_ID, f"{field} must be between {low} and {high} seconds, got {value}")


def validate_check(check: Check) -> None:
    """``bad_request`` unless ``check`` can run."""
    validate_name(check.name)
    _positive(check.interval, "interval", MIN_INTERVAL, MAX_INTERVAL)
    if not math.isfinite(check.timeout) or check.timeout <= 0 or check.timeout > MAX_TIMEOUT:
        raise bad_request(
            _ID, f"timeout must be positive and at most {MAX_TIMEOUT} s, got {check.timeout}"
        )
    target = check.target
    if check.kind == "rpc":
        if not target.service:
            raise bad_request(_ID, "target.service is required for an rpc check")
        handler, dot, method = target.endpoint.partition(".")
        if not (handler and dot and method):
            raise bad_request(
                _ID, f"target.endpoint must be Handler.Method, got {target.endpoint!r}"
            )
        if target.url:
            raise bad_request(_ID, "target.url is only for http checks")
        try:
            size = len(msgspec.json.encode(target.request))
        except (TypeError, msgspec.EncodeError) as exc:
            raise bad_request(_ID, f"target.request is not JSON: {exc}") from exc
        if size > MAX_REQUEST:
            raise bad_request(_ID, f"target.request is {size} bytes, over {MAX_REQUEST}")
    elif check.kind == "http":
        url = urlsplit(target.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise bad_request(_ID, f"target.url must be an http(s) URL, got {target.url!r}")
        if target.service or target.endpoint or target.request is not None:
            raise bad_request(_ID, "target.service/endpoint/request are only for rpc checks")
    else:
        raise bad_request(_ID, f"kind must be rpc or http, got {check.kind!r}")
    expect = check.expect
    if expect.status is not None and not 100 <= expect.status <= 599:
        raise bad_request(_ID, f"expect.status must be 100-599, got {expect.status}")
    if expect.field is not None and (
        not expect.field or any(not part for part in expect.field.split("."))
    ):
        raise bad_request(_ID, f"expect.field must be a dotted path, got {expect.field!r}")
    if expect.equals is not msgspec.UNSET and expect.field is None:
        raise bad_request(_ID, "expect.equals needs expect.field")
    if expect.max_latency_ms is not None and not (
        math.isfinite(expect.max_latency_ms) and expect.max_latency_ms > 0
    ):
        raise bad_request(
            _ID, f"expect.max_latency_ms must be positive, got {expect.max_latency_ms}"
        )
