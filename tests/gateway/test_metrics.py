"""/metrics (Prometheus text, one registry per gateway, bounded labels, admin-only with auth)
and the structured access log (one JSON line per request, no secrets)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from micro import Context, Service, conflict, public
from micro.gateway import Gateway
from micro.server import MicroServer
from micro.testing import admin_header, start_server


class Req(msgspec.Struct):
    name: str


def greeter() -> Service:
    svc = Service("greeter")

    @svc.handler
    class Greeter:
        @public
        async def call(self, ctx: Context, req: Req) -> Req:
            return req

        @public
        async def clash(self, ctx: Context, req: Req) -> Req:
            raise conflict("greeter", "taken")

    return svc


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MicroServer]:
    server = await start_server(tmp_path / "data")
    svc = greeter()
    svc.use(registry=server.registry, auth=server.guard)
    await svc.start()
    try:
        yield server
    finally:
        await svc.stop()
        await server.stop()


async def request(
    method: str, url: str, body: str = "{}", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, data=body, headers=headers or {}) as r:
            return r.status, await r.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_and_histogram_after_a_few_calls(server: MicroServer) -> None:
    gateway = Gateway(server.client, "127.0.0.1:0", guard=server.guard, metrics_public=True)
    await gateway.start()
    base = f"http://{gateway.address}"
    try:
        for _ in range(2):
            assert (await request("POST", f"{base}/greeter/call", '{"name": "a"}'))[0] == 200
        assert (await request("POST", f"{base}/greeter/call", '{"name": 1}'))[0] == 400
        assert (await request("POST", f"{base}/greeter/clash", '{"name": "a"}'))[0] == 409
        # unknown services and endpoints, malformed paths: labelled "-", whatever the path
        admin = {"Authorization": await admin_header(server)}
        for path in ("/nobody/call", "/greeter/nothing", "/x1/a/b/c/d/e", "/bad%20path"):
            assert (await request("POST", base + path, headers=admin))[0] in (400, 404)
        status, text = await request("GET", f"{base}/metrics")
        assert status == 200
        found = samples(text)
        call = {"service": "greeter", "endpoint": "Greeter.Call"}
        assert value(found, "micro_gateway_requests_total", status="200", **call) == 2
        assert value(found, "micro_gateway_requests_total", status="400", **call) == 1
        assert value(found, "micro_gateway_request_seconds_count", **call) == 3
        assert value(found, "micro_gateway_request_seconds_bucket", le="+Inf", **call) == 3
        assert value(found, "micro_gateway_request_seconds_sum", **call) > 0
        assert value(found, "micro_gateway_errors_total", code="bad_request", **call) == 1
        clash = {"service": "greeter", "endpoint": "Greeter.Clash"}
        assert value(found, "micro_gateway_errors_total", code="conflict", **clash) == 1
        services = {dict(k[1]).get("service") for k in found if k[0].startswith("micro_gateway")}
        assert services == {"greeter", "-"}
        unknown = {"service": "-", "endpoint": "-"}
        assert value(found, "micro_gateway_errors_total", code="not_found", **unknown) == 3
        assert value(found, "micro_gateway_errors_total", code="bad_request", **unknown) == 1
    finally:
        await gateway.stop()


async def test_each_gateway_counts_apart(server: MicroServer) -> None:
    one = Gateway(server.client, "127.0.0.1:0", metrics_public=True)
    two = Gateway(server.client, "127.0.0.1:0", metrics_public=True)
    await one.start()
    await two.start()
    try:
        await request("POST", f"http://{one.address}/greeter/call", '{"name": "a"}')
        call = {"service": "greeter", "endpoint": "Greeter.Call", "status": "200"}
        text_one = (await request("GET", f"http://{one.address}/metrics"))[1]
        text_two = (await request("GET", f"http://{two.address}/metrics"))[1]
        assert value(samples(text_one), "micro_gateway_requests_total", **call) == 1
        assert value(samples(text_two), "micro_gateway_requests_total", **call) == 0
    finally:
        await one.stop()
        await two.stop()


async def test_metrics_need_an_admin_unless_public(server: MicroServer) -> None:
    assert server.gateway is not None and server.auth is not None
    url = f"http://{server.gateway.address}/metrics"
    status, body = await request("GET", url)
    assert status == 401 and json.loads(body)["code"] == "unauthorized"
    await server.auth.create_account("alice", secret="correct horse battery", scopes=[])
    alice = (await server.auth.login("alice", "correct horse battery")).access_token
    status, _ = await request("GET", url, headers={"Authorization": f"Bearer {alice}"})
    assert status == 403
    status, text = await request("GET", url, headers={"Authorization": await admin_header(server)})
    assert status == 200 and "micro_gateway_requests_total" in text


async def test_access_log_lines_without_secrets(
    server: MicroServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert server.gateway is not None
    admin = await admin_header(server)
    token = admin[7:]
    base = f"http://{server.gateway.address}"
    with caplog.at_level(logging.INFO, "micro.gateway.access"):
        status, _ = await request(
            "POST",
            f"{base}/greeter/call?token=query-secret",
            '{"name": "a"}',
            {"Authorization": admin, "traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"},
        )
        assert status == 200
        await request("POST", f"{base}/nobody/call", headers={"Cookie": f"micro-token={token}"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "micro.gateway.access"]
    assert len(lines) == 2
    first, second = lines
    assert first["method"] == "POST" and first["path"] == "/greeter/call"
    assert (first["status"], first["service"], first["endpoint"]) == (
        200,
        "greeter",
        "Greeter.Call",
    )
    assert first["account"] == "micro/admin" and first["remote"] == "127.0.0.1"
    assert first["trace_id"] == "ab" * 16
    assert first["duration_ms"] >= 0
    assert (second["status"], second["service"]) == (404, "nobody")
    assert vars(caplog.records[-1])["access"]["status"] == 404
    assert token not in caplog.text and "query-secret" not in caplog.text
    assert "Bearer" not in caplog.text
