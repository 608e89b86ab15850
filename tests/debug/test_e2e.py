"""A trace across gateway -> alpha -> beta on a real micro server, collected from the
services' ``Debug`` handlers; stats and health over RPC; the CLI commands.

The gateway forwards ``Micro-*`` headers and ``Authorization`` only, so a ``traceparent``
HTTP header does not reach the service yet (the one-line change: also forward
``traceparent``). The RPC test plays the gateway's part by sending ``traceparent`` in the
call metadata, as the gateway will; the HTTP test accepts either gateway behaviour.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import msgspec
import pytest
import typer
from typer.testing import CliRunner

from micro import Context, Service
from micro.cli.debug import register
from micro.debug import Instrumentation, StatsSnapshot, instrument
from micro.debug.collect import TraceTree, collect_trace
from micro.debug.logs import JsonFormatter
from micro.debug.messages import Empty, HealthResponse
from micro.debug.trace import format_traceparent, new_span_id, new_trace_id, span
from micro.errors import MicroError, bad_request
from micro.server import MicroServer
from micro.transport.frames import Codec
from tests.noauth import micro_server  # noqa: F401 (auth off: not what these test)


class Req(msgspec.Struct):
    name: str


class Resp(msgspec.Struct):
    message: str


log = logging.getLogger("tests.debug.alpha")


@dataclass
class Pair:
    alpha: Instrumentation
    beta: Instrumentation
    logs: list[str]


def make(name: str) -> tuple[Service, Instrumentation]:
    """A service with the debug middleware and handler: those the Service mounts by itself
    once integrated (``svc.debug``), else added here the same way."""
    svc = Service(name)
    kit = getattr(svc, "debug", None)
    if not isinstance(kit, Instrumentation):
        kit = instrument(name)
        svc.middleware[:0] = kit.middleware
        svc.handler(kit.handler, name="Debug")
    return svc, kit


@pytest.fixture
async def pair(micro_server: MicroServer) -> AsyncIterator[Pair]:
    (alpha, kit_a), (beta, kit_b) = make("alpha"), make("beta")
    kits = Pair(kit_a, kit_b, [])

    class Alpha:
        async def hop(self, ctx: Context, req: Req) -> Resp:
            log.info("alpha calls beta")
            got = await alpha.client.call("beta", "Beta.Work", req, response_type=Resp)
            return Resp(f"alpha+{got.message}")

    class Beta:
        async def work(self, ctx: Context, req: Req) -> Resp:
            if req.name == "bad":
                raise bad_request("beta", "bad name")
            return Resp(f"beta:{req.name}")

    alpha.handler(Alpha())
    beta.handler(Beta())

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kits.logs.append(self.format(record))

    collect = Collect()
    collect.setFormatter(JsonFormatter("alpha"))
    log.addHandler(collect)
    log.setLevel(logging.INFO)
    for svc in (alpha, beta):
        svc.use(registry=micro_server.registry)
        await svc.start()
    try:
        yield kits
    finally:
        log.removeHandler(collect)
        for svc in (alpha, beta):
            await svc.stop(grace=1.0)


def check_chain(tree: TraceTree, trace_id: str, edge_span: str | None) -> None:
    assert tree.trace_id == trace_id and tree.spans == 2 and tree.unreachable == []
    (root,) = tree.roots
    assert (root.span.service, root.span.endpoint) == ("alpha", "Alpha.Hop")
    assert root.span.parent_id == (edge_span or "")
    (child,) = root.children
    assert (child.span.service, child.span.endpoint) == ("beta", "Beta.Work")
    assert child.span.parent_id == root.span.span_id and child.children == []
    assert child.span.trace_id == root.span.trace_id == trace_id
    assert root.span.duration >= child.span.duration


async def test_trace_over_rpc_links_edge_alpha_and_beta(
    micro_server: MicroServer, pair: Pair
) -> None:
    trace_id, edge = new_trace_id(), new_span_id()
    reply = await micro_server.client.call(
        "alpha",
        "Alpha.Hop",
        Req("x"),
        response_type=Resp,
        metadata={"traceparent": format_traceparent(trace_id, edge)},
    )
    assert reply.message == "alpha+beta:x"
    tree = await collect_trace(micro_server.client, micro_server.registry, trace_id)
    check_chain(tree, trace_id, edge)
    (line,) = [json.loads(x) for x in pair.logs]
    assert line["trace_id"] == trace_id and line["message"] == "alpha calls beta"


async def test_gateway_span_is_the_root_when_the_gateway_records_one(
    micro_server: MicroServer, pair: Pair
) -> None:
    """What the gateway integration does (see docs/debug.md): a span per HTTP request around
    the forwarded call, its recorder served as service "gateway" so the collector finds it."""
    kit = instrument("gateway")  # as the Gateway holds it (its own, not a Service's)
    gateway = Service("gateway")
    gateway.handler(kit.handler, name="Debug")
    gateway.use(registry=micro_server.registry)
    await gateway.start()
    try:
        browser = format_traceparent(new_trace_id(), new_span_id())
        with span(kit.recorder, "gateway", "POST /alpha/hop", browser) as opened:
            await micro_server.client.call_raw(
                "alpha",
                "Alpha.Hop",
                b'{"name": "g"}',
                codec=Codec.JSON,
                metadata={"traceparent": opened.traceparent},
            )
        tree = await collect_trace(micro_server.client, micro_server.registry, opened.trace_id)
    finally:
        await gateway.stop(grace=1.0)
    (root,) = tree.roots
    assert (root.span.service, root.span.endpoint) == ("gateway", "POST /alpha/hop")
    assert root.span.parent_id == browser[36:52]
    (alpha,) = root.children
    assert alpha.span.service == "alpha" and alpha.span.parent_id == root.span.span_id
    (beta,) = alpha.children
    assert beta.span.service == "beta" and beta.span.parent_id == alpha.span.span_id
    assert tree.spans == 3


async def test_trace_through_the_http_gateway(micro_server: MicroServer, pair: Pair) -> None:
    """The gateway continues the request's ``traceparent`` with a span of its own, the root
    of gateway -> alpha -> beta."""
    assert micro_server.gateway is not None
    trace_id, edge = new_trace_id(), new_span_id()
    headers = {"traceparent": format_traceparent(trace_id, edge)}
    url = f"http://{micro_server.gateway.address}/alpha/hop"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json={"name": "h"}, headers=headers) as r,
    ):
        assert (r.status, await r.json()) == (200, {"message": "alpha+beta:h"})
    (alpha,) = pair.alpha.recorder.recent(1)
    tree = await collect_trace(micro_server.client, micro_server.registry, alpha.trace_id)
    (root,) = tree.roots
    assert root.span.service == "gateway" and root.span.endpoint == "POST /alpha/hop"
    assert alpha.trace_id == trace_id and root.span.parent_id == edge and tree.spans == 3
    (chain,) = root.children
    assert chain.span.parent_id == root.span.span_id
    assert chain.span.span_id == alpha.span_id and chain.span.endpoint == "Alpha.Hop"
    (beta,) = chain.children
    assert beta.span.service == "beta" and beta.span.parent_id == alpha.span_id


async def test_client_errors_are_recorded_in_stats_and_spans(
    micro_server: MicroServer, pair: Pair
) -> None:
    traced = {"traceparent": format_traceparent(new_trace_id(), new_span_id())}
    with pytest.raises(MicroError) as caught:
        await micro_server.client.call(
            "alpha", "Alpha.Hop", Req("bad"), response_type=Resp, metadata=traced
        )
    assert caught.value.status == 400
    await micro_server.client.call(
        "alpha", "Alpha.Hop", Req("ok"), response_type=Resp, metadata=traced
    )
    snap = await micro_server.client.call(
        "beta", "Debug.Stats", Empty(), response_type=StatsSnapshot
    )
    (work,) = snap.endpoints  # Debug.* calls are not counted
    assert (work.name, work.requests, work.errors, work.client_errors) == ("Beta.Work", 2, 0, 1)
    assert snap.service == "beta" and snap.memory_rss > 0
    (ok, bad) = pair.beta.recorder.recent(2)
    assert (ok.status, bad.status, bad.error) == (
        "ok",
        "client_error",
        "beta: bad name (bad_request, 400)",
    )
    health = await micro_server.client.call(
        "alpha", "Debug.Health", Empty(), response_type=HealthResponse
    )
    assert health.status == "ok" and health.uptime > 0


async def test_unknown_and_malformed_trace_ids(micro_server: MicroServer, pair: Pair) -> None:
    with pytest.raises(MicroError) as caught:
        await collect_trace(micro_server.client, micro_server.registry, new_trace_id())
    assert caught.value.code == "not_found"
    with pytest.raises(MicroError) as caught:
        await collect_trace(micro_server.client, micro_server.registry, "xyz")
    assert caught.value.status == 400 and "trace_id" in caught.value.detail
    with pytest.raises(MicroError) as caught:
        await micro_server.client.call("alpha", "Debug.Trace", {"trace_id": "nope"})
    assert caught.value.status == 400


async def test_cli_stats_and_trace(micro_server: MicroServer, pair: Pair) -> None:
    trace_id = new_trace_id()
    await micro_server.client.call(
        "alpha",
        "Alpha.Hop",
        Req("cli"),
        response_type=Resp,
        metadata={"traceparent": format_traceparent(trace_id, new_span_id())},
    )
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    env = {"MICRO_SERVER": micro_server.address}

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), env=env)
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(invoke, "stats", "alpha", "-o", "json")
    assert code == 0, out
    (node,) = json.loads(out)
    assert node["service"] == "alpha" and node["endpoints"][0]["requests"] == 1
    code, out = await asyncio.to_thread(invoke, "stats", "alpha")
    assert code == 0 and "Alpha.Hop" in out and "P99 MS" in out
    code, out = await asyncio.to_thread(invoke, "trace", trace_id)
    assert code == 0, out
    assert trace_id in out and "alpha Alpha.Hop" in out and "beta Beta.Work" in out
    assert out.index("alpha Alpha.Hop") < out.index("beta Beta.Work")
    code, out = await asyncio.to_thread(invoke, "trace", new_trace_id())
    assert code == 1 and "not found" in out
    code, out = await asyncio.to_thread(invoke, "stats", "nobody")
    assert code == 1 and "error:" in out
