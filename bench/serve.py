"""The server child of the RPC benchmark: ``python -m bench.serve <transport> [arg]``.

Starts the transport's echo server, prints ``READY <address>`` and serves until SIGTERM,
SIGINT, end-of-file on stdin (the benchmark went away) or ``--lifetime`` seconds, whichever
comes first. With ``BENCH_PROFILE=<file>`` in the environment the whole child runs under
cProfile and writes its stats there on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import signal
import sys

import uvloop

from .transports import load

__all__ = ["main"]


async def _serve(name: str, arg: str, lifetime: float) -> None:
    address, stop = await load(name).serve(arg)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        with contextlib.suppress(OSError):
            if os.read(stdin, 4096):
                return
        loop.remove_reader(stdin)
        done.set()

    loop.add_reader(stdin, on_stdin)
    print(f"READY {address}", flush=True)
    try:
        await asyncio.wait_for(done.wait(), lifetime)
    except TimeoutError:
        print(f"bench.serve: lifetime of {lifetime:.0f} s is over; stopping", file=sys.stderr)
    finally:
        loop.remove_reader(stdin)
        await asyncio.wait_for(stop(), 5)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("transport")
    parser.add_argument("arg", nargs="?", default="")
    parser.add_argument("--lifetime", type=float, default=900.0, help="seconds (default 900)")
    args = parser.parse_args(argv)
    profile_path = os.environ.get("BENCH_PROFILE")
    profiler = cProfile.Profile() if profile_path else None
    if profiler is not None:
        profiler.enable()
    try:
        uvloop.run(_serve(args.transport, args.arg, args.lifetime))
    finally:
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
