"""Running one check: call the target, then compare the outcome with its expectations."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import MicroError
from . import Check, CheckResult, Expect

if TYPE_CHECKING:
    import aiohttp

    from ..client import Client

__all__ = ["evaluate", "lookup", "run_check"]

_MISSING = object()
MAX_BODY = 1024 * 1024
"""The most of an HTTP response a check reads (a longer JSON body does not parse)."""


def lookup(value: Any, path: str) -> Any:
    """The item at dotted ``path`` in a JSON value (list items by index), or a sentinel
    that is not a JSON value when there is none."""
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, list)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def evaluate(
    expect: Expect, success: bool, status: int, body: Any, latency_ms: float, detail: str
) -> tuple[bool, str]:
    """Whether an outcome meets ``expect``, and a one-line detail."""
    if expect.status is not None:
        if status != expect.status:
            return False, f"status {status}, expected {expect.status}" + (
                f": {detail}" if detail else ""
            )
    elif not success:
        return False, detail or f"status {status}"
    if expect.field is not None:
        value = lookup(body, expect.field)
        if value is _MISSING:
            return False, f"field {expect.field} missing"
        if expect.equals is not msgspec.UNSET and not _same(value, expect.equals):
            shown = json.dumps(value, default=str)[:200]
            return False, f"field {expect.field} is {shown}, expected {json.dumps(expect.equals)}"
    if expect.max_latency_ms is not None and latency_ms > expect.max_latency_ms:
        return False, f"latency {latency_ms:.1f} ms over {expect.max_latency_ms} ms"
    return True, f"status {status}"


async def _call_rpc(check: Check, client: Client) -> tuple[bool, int, Any, str]:
    target = check.target
    request = target.request if target.request is not None else {}
    try:
        body = await client.call(target.service, target.endpoint, request, timeout=check.timeout)
    except MicroError as err:
        return False, err.status, None, f"{err.code}: {err.detail}"
    return True, 200, body, ""


async def _call_http(check: Check, session: aiohttp.ClientSession) -> tuple[bool, int, Any, str]:
    import aiohttp

    try:
        async with session.get(
            check.target.url, timeout=aiohttp.ClientTimeout(total=check.timeout)
        ) as resp:
            data = await resp.content.read(MAX_BODY)
            status = resp.status
    except TimeoutError:
        raise  # an OSError too; reported as a timeout by run_check
    except (aiohttp.ClientError, OSError) as exc:
        return False, 0, None, f"{type(exc).__name__}: {exc}"
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    return status < 400, status, body, "" if status < 400 else f"status {status}"


async def run_check(
    check: Check, client: Client | None, session: aiohttp.ClientSession | None, now: float
) -> CheckResult:
    """Run ``check`` once (bounded by its timeout); ``now`` stamps the result."""
    start = time.perf_counter()
    try:
        if check.kind == "rpc":
            if client is None:
                return CheckResult(now, False, 0.0, "the monitor has no client for rpc checks")
            success, status, body, detail = await _call_rpc(check, client)
        else:
            if session is None:
                return CheckResult(now, False, 0.0, "the monitor has no http session")
            success, status, body, detail = await _call_http(check, session)
    except TimeoutError:
        latency_ms = (time.perf_counter() - start) * 1000
        return CheckResult(now, False, latency_ms, f"timed out after {check.timeout} s")
    latency_ms = (time.perf_counter() - start) * 1000
    ok, why = evaluate(check.expect, success, status, body, latency_ms, detail)
    return CheckResult(now, ok, latency_ms, why)
