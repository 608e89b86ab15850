"""``python -m bench debug``: what the debug middleware adds to each call.

Awaits an empty handler ``--calls`` times bare, then wrapped by the stats middleware, the
tracing middleware (the call carries a valid ``traceparent``) and both, in one process with
no I/O; prints the added nanoseconds per call (the best of ``--rounds`` runs).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from micro import Context
from micro.debug.stats import Stats, stats_middleware
from micro.debug.trace import (
    SpanRecorder,
    format_traceparent,
    new_span_id,
    new_trace_id,
    tracing_middleware,
)
from micro.service.endpoint import HandlerFunc

DESCRIPTION = "per-call overhead of the stats and tracing middleware (no I/O)"


async def _empty(ctx: Context, req: Any) -> Any:
    return req


async def _time(call: HandlerFunc, calls: int) -> float:
    parent = format_traceparent(new_trace_id(), new_span_id())
    ctx = Context({"traceparent": parent}, service="bench", endpoint="Bench.Call")
    started = time.perf_counter()
    for _ in range(calls):
        ctx.metadata["traceparent"] = parent
        await call(ctx, None)
    return (time.perf_counter() - started) / calls


async def _run(calls: int, rounds: int) -> dict[str, float]:
    cases: dict[str, HandlerFunc] = {
        "bare": _empty,
        "stats": stats_middleware(Stats("bench"))(_empty),
        "tracing": tracing_middleware(SpanRecorder())(_empty),
        "both": tracing_middleware(SpanRecorder())(stats_middleware(Stats("bench"))(_empty)),
    }
    best = {
        name: min([await _time(call, calls) for _ in range(rounds)]) for name, call in cases.items()
    }
    return {name: (t - best["bare"]) * 1e9 for name, t in best.items() if name != "bare"}


def main(argv: list[str]) -> int:
    """Run and print one line per middleware."""
    parser = argparse.ArgumentParser(prog="python -m bench debug", description=DESCRIPTION)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    for name, added in asyncio.run(_run(args.calls, args.rounds)).items():
        print(f"{name:<8} +{added:6.0f} ns per call")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
