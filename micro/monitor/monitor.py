"""The monitor: probes registered nodes, runs checks, removes and re-admits nodes, alerts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import MicroError, bad_request
from ..registry import ServiceInfo
from . import ALERT_TOPIC, MAX_HISTORY, Alert, Check, CheckResult, CheckStatus, NodeHealth
from ._book import Book, Entry
from ._nodes import NodeKey, NodeState
from ._run import run_check
from .probe import probe

if TYPE_CHECKING:
    import aiohttp

    from ..client import Client
    from ..events import Events
    from ..registry import Registry
    from ..store import Store

__all__ = ["Monitor"]

log = logging.getLogger("micro.monitor")
_ID = "monitor"
_alert_encoder = msgspec.json.Encoder()
Prober = Callable[[str, float], Awaitable[float]]


class Monitor:
    """Watches every node in ``registry`` and runs user-defined checks.

    :meth:`tick` does whatever is due by ``clock``: a probe round of every node (each
    ``interval`` seconds) and every check whose own interval has passed. :meth:`start`
    runs :meth:`tick` in a background task, waking when something is due (at least every
    ``interval`` real seconds); tests call :meth:`tick` themselves, moving a fake clock.
    With ``store``, checks and history are durable (loaded by :meth:`start` or :meth:`load`).
    """

    def __init__(
        self,
        registry: Registry,
        client: Client | None = None,
        events: Events | None = None,
        store: Store | None = None,
        *,
        interval: float = 5.0,
        probe_timeout: float = 1.0,
        failures: int = 3,
        ttl: float = 15.0,
        history: int = 100,
        forget_after: float = 3600.0,
        clock: Callable[[], float] = time.time,
        prober: Prober = probe,
    ) -> None:
        if interval <= 0 or probe_timeout <= 0 or failures < 1 or ttl <= 0:
            raise ValueError("interval, probe_timeout, ttl must be positive; failures >= 1")
        if not 1 <= history <= MAX_HISTORY:
            raise ValueError(f"history must be 1 to {MAX_HISTORY}")
        self.registry = registry
        self.client = client
        self.events = events
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.failures = failures
        self.ttl = ttl
        self.forget_after = forget_after
        self.clock = clock
        self._prober = prober
        self._book = Book(store, history)
        self._nodes: dict[NodeKey, NodeState] = {}
        self._next_probe = 0.0
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._probing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Read stored checks and history."""
        await self._book.load(self.clock())

    async def start(self) -> None:
        """Load stored checks, then tick in the background."""
        await self.load()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop the background loop and close the HTTP session."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self) -> None:
        while True:
            await self.tick(wait=False)
            now = self.clock()
            due = min([self._next_probe, *(e.due for e in self._book.entries.values())])
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.01, min(due - now, self.interval)))
            except TimeoutError:
                pass

    # -- one round ---------------------------------------------------------------------------

    async def tick(self, wait: bool = True) -> None:
        """Start a probe round if one is due, and every due check; with ``wait`` (tests),
        return when they are done. The background loop does not wait, so a slow check never
        delays probing; a round or check still running when due again is not started twice."""
        now = self.clock()
        started: list[asyncio.Task[None]] = []
        if now >= self._next_probe:
            self._next_probe = now + self.interval
            if not self._probing:
                self._probing = True
                started.append(self._spawn(self._probe_round(now)))
        for entry in list(self._book.entries.values()):
            if now >= entry.due:
                entry.due = now + entry.check.interval
                if not entry.running:
                    entry.running = True
                    started.append(self._spawn(self._run(entry, now)))
        if wait and started:
            await asyncio.gather(*started)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("monitor work failed", exc_info=task.exception())

    async def _probe_round(self, now: float) -> None:
        try:
            await self._probe_all(now)
        finally:
            self._probing = False

    async def _probe_all(self, now: float) -> None:
        listed: dict[NodeKey, ServiceInfo] = {}
        for svc in await self.registry.list_services():
            for node in svc.nodes:
                key = (svc.name, svc.version, node.id)
                listed[key] = msgspec.structs.replace(svc, nodes=[node])
        for key in list(self._nodes):
            state = self._nodes[key]
            if key not in listed and state.state == "up":
                del self._nodes[key]  # left the registry on its own
            elif state.down_since is not None and now - state.down_since > self.forget_after:
                del self._nodes[key]
        for key, info in listed.items():
            known = self._nodes.get(key)
            if known is None:
                self._nodes[key] = NodeState(info)
            else:
                known.info = info
        await asyncio.gather(
            *(self._probe_node(s, key in listed) for key, s in list(self._nodes.items()))
        )

    async def _probe_node(self, state: NodeState, listed: bool) -> None:
        try:
            seconds = await self._prober(state.node.address, self.probe_timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            state.failures += 1
            state.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            state.checked = self.clock()
            if state.failures < self.failures:
                return
            if listed:
                await self.registry.deregister(state.info)
            if state.state == "up":
                state.state, state.down_since = "down", state.checked
                log.warning(
                    "node %s of %s is down: %s", state.node.id, state.info.name, state.error
                )
                await self._alert(Alert("node_down", state.checked, state.error, **_where(state)))
            return
        state.failures, state.error = 0, ""
        state.latency_ms, state.checked = seconds * 1000, self.clock()
        if state.state == "down":
            if not listed:
                await self.registry.register(state.info, self.ttl)
            state.state, state.down_since = "up", None
            log.info("node %s of %s is up again", state.node.id, state.info.name)
            await self._alert(Alert("node_up", state.checked, **_where(state)))

    async def _run(self, entry: Entry, now: float) -> None:
        try:
            await self._run_check(entry, now)
        finally:
            entry.running = False

    async def _run_check(self, entry: Entry, now: float) -> None:
        if entry.check.kind == "http" and self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession()
        result = await run_check(entry.check, self.client, self._session, now)
        await self._book.record(entry, result)
        if result.ok == entry.failing:
            entry.failing = not result.ok
            alert = Alert(
                "check_failed" if entry.failing else "check_recovered",
                now,
                result.detail,
                check=entry.check.name,
            )
            await self._alert(alert)

    async def _alert(self, alert: Alert) -> None:
        if self.events is None:
            return
        try:
            await self.events.publish(ALERT_TOPIC, _alert_encoder.encode(alert))
        except MicroError as err:  # an alert lost is logged, monitoring goes on
            log.error("cannot publish %s alert: %s", alert.type, err.detail)

    # -- the API the handler serves ------------------------------------------------------------

    def health(self) -> list[NodeHealth]:
        """Every known node's state, sorted by service, version, node."""
        return [self._nodes[key].health() for key in sorted(self._nodes)]

    def checks(self) -> list[CheckStatus]:
        """Every check with its latest result, sorted by name."""
        return [
            CheckStatus(e.check, e.history[-1] if e.history else None)
            for _, e in sorted(self._book.entries.items())
        ]

    async def add(self, check: Check) -> None:
        """Add ``check`` (``bad_request`` if invalid, ``conflict`` if the name exists); it
        first runs on the next tick."""
        await self._book.add(check, self.clock())
        self._wake.set()

    async def remove(self, name: str) -> None:
        """Remove a check and its history (``not_found`` if absent)."""
        await self._book.remove(name)

    def history(self, name: str, limit: int = 20) -> list[CheckResult]:
        """The newest ``limit`` results of check ``name``, newest first."""
        if not 1 <= limit <= MAX_HISTORY:
            raise bad_request(_ID, f"limit must be 1 to {MAX_HISTORY}, got {limit}")
        history = self._book.get(name).history
        return [history[-i] for i in range(1, min(limit, len(history)) + 1)]


def _where(state: NodeState) -> dict[str, Any]:
    return {"service": state.info.name, "node": state.node.id, "address": state.node.address}
