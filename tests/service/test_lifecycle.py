"""Middleware, lifecycle hooks, context propagation and graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from micro import Context, HandlerFunc, MicroError, Service, current_context, unauthorized
from micro.registry.memory import MemoryRegistry
from micro.server import MicroServer
from micro.testing import eventually, serve
from tests.noauth import micro_server  # noqa: F401 (auth off: not what these test)


class Req(msgspec.Struct):
    name: str = ""


class Resp(msgspec.Struct):
    message: str


async def test_middleware_runs_in_list_order_around_every_endpoint() -> None:
    order: list[str] = []

    def tag(label: str) -> Any:
        def middleware(next_call: HandlerFunc) -> HandlerFunc:
            async def call(ctx: Context, req: Any) -> Any:
                order.append(f"{label}>{ctx.endpoint}")
                resp = await next_call(ctx, req)
                order.append(f"<{label}")
                return resp

            return call

        return middleware

    def deny_anonymous(next_call: HandlerFunc) -> HandlerFunc:
        async def call(ctx: Context, req: Any) -> Any:
            if ctx.metadata.get("user") is None:
                raise unauthorized("mw", "who are you?")
            return await next_call(ctx, req)

        return call

    svc = Service("mw", middleware=[tag("outer"), tag("inner"), deny_anonymous])

    @svc.handler
    class Mw:
        async def call(self, ctx: Context, req: Req) -> Resp:
            order.append("handler")
            return Resp(ctx.metadata["user"])

    async with serve(svc) as client:
        resp = await client.call("Mw.Call", Req(), metadata={"user": "ann"})
        assert resp == {"message": "ann"}
        assert order == ["outer>Mw.Call", "inner>Mw.Call", "handler", "<inner", "<outer"]
        with pytest.raises(MicroError) as info:
            await client.call("Mw.Call", Req())
        assert info.value.status == 401


async def test_hooks_run_around_serving() -> None:
    events: list[str] = []
    reg = MemoryRegistry()
    svc = Service("hooks", registry=reg, address="127.0.0.1:0")

    @svc.handler
    class Hooks:
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp("")

    @svc.on_start
    async def started() -> None:
        events.append(f"start listening={bool(svc.address)}")

    @svc.on_stop
    async def stopped() -> None:
        events.append("stop")

    await svc.start()
    events.append(f"registered={len(await reg.list_services())}")
    await svc.stop()
    assert events == ["start listening=True", "registered=1", "stop"]


async def test_deadline_and_metadata_follow_the_call_to_the_next_hop() -> None:
    seen: dict[str, Any] = {}
    reg = MemoryRegistry()
    front = Service("front")
    back = Service("back")

    @front.handler
    class Front:
        async def call(self, ctx: Context, req: Req) -> Resp:
            seen["front_ctx_is_current"] = current_context() is ctx
            return Resp((await front.client.call("back", "Back.Call", Req()))["message"])

    @back.handler
    class Back:
        async def call(self, ctx: Context, req: Req) -> Resp:
            seen["back_remaining"] = ctx.remaining()
            return Resp(ctx.metadata.get("trace-id", ""))

    async with serve(front, back, registry=reg) as client:
        resp = await client.call("Front.Call", Req(), timeout=2.0, metadata={"trace-id": "t1"})
    assert resp == {"message": "t1"}
    assert seen["front_ctx_is_current"] is True
    assert 0 < seen["back_remaining"] <= 2.0


SLOW_SERVICE = textwrap.dedent(
    """
    import asyncio, msgspec
    from micro import Context, Service

    class Req(msgspec.Struct):
        seconds: float = 0.0

    class Resp(msgspec.Struct):
        done: bool

    service = Service("slow")

    @service.handler
    class Slow:
        async def call(self, ctx: Context, req: Req) -> Resp:
            await asyncio.sleep(req.seconds)
            return Resp(True)

    @service.on_stop
    async def bye() -> None:
        print("stop hook ran", flush=True)

    service.run()
    """
)


async def test_sigterm_drains_in_flight_calls_then_deregisters(
    micro_server: MicroServer, tmp_path: Path
) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SLOW_SERVICE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env={"MICRO_SERVER": micro_server.address, "MICRO_AUTH": "off", "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        async def registered() -> bool:
            try:
                return bool(await micro_server.registry.get_service("slow"))
            except MicroError:
                return False

        await eventually(registered, message="slow registered")
        client = micro_server.client
        in_flight = asyncio.ensure_future(client.call("slow", "Slow.Call", {"seconds": 1.0}))
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(in_flight, 10) == {"done": True}
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        out = (await proc.stdout.read()).decode() if proc.stdout else ""
        assert "stop hook ran" in out
        assert not await registered()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
