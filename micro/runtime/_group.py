"""One service of the local runtime: its instances, and the rolling update that replaces them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ..errors import unavailable
from . import ServiceSpec, ServiceStatus
from ._supervisor import Hooks, Options, Supervisor

__all__ = ["Group", "Healthy", "Retiring"]

Healthy = Callable[[Supervisor], Awaitable[bool]]
"""True once a new instance may take traffic (registered, or simply up)."""

Retiring = Callable[[Supervisor], Awaitable[None]]
"""Called before an old instance is stopped (to take it out of the registry first)."""

_POLL = 0.05


class Group:
    """The supervisors of one service: ``spec.instances`` of them, and during a rolling
    update the new ones next to the old ones they replace."""

    def __init__(self, spec: ServiceSpec, options: Options, hooks: Hooks) -> None:
        self.spec = spec
        self.options = options
        self.hooks = hooks
        self.members = [Supervisor(spec, options, hooks, i) for i in range(spec.instances)]
        self._stopping = False

    def start(self) -> None:
        """Start supervising every instance."""
        for member in self.members:
            member.start()

    async def stop(self) -> None:
        """Stop every instance (and any rolling update)."""
        self._stopping = True
        await asyncio.gather(*(member.stop() for member in list(self.members)))

    def pids(self) -> list[int]:
        """The pids of the running processes."""
        return [pid for pid in (m.pid() for m in self.members) if pid is not None]

    def sources(self) -> list[str]:
        """The directories the instances run in, besides the spec's source (the export of a
        git source; the old source during an update)."""
        runs = {self.options.run_dir(m.spec) for m in self.members}
        return sorted(runs - {self.spec.source})

    def log_indexes(self) -> list[int]:
        """The instance indexes whose logs make up the service's log."""
        return sorted({m.index for m in self.members} | set(range(self.spec.instances)))

    def snapshot(self) -> ServiceStatus:
        """The service's status now (see ServiceStatus for how instances are summed up)."""
        members = sorted(self.members, key=lambda m: (m.index, m.spec is not self.spec))
        instances = [m.snapshot() for m in members]
        first = instances[0]
        not_running = [i for i in instances if i.status != "running"]
        with_error = [i for i in instances if i.error or i.last_exit is not None]
        spec = self.spec
        return ServiceStatus(
            name=spec.name, version=spec.version, source=spec.source,
            status=not_running[0].status if not_running else "running",
            pid=first.pid, restarts=sum(i.restarts for i in instances),
            started_at=members[0].started_wall(), uptime=first.uptime,
            last_exit=with_error[0].last_exit if with_error else None,
            error=next((i.error for i in instances if i.error), ""),
            instances=instances,
        )

    async def roll(
        self, new: ServiceSpec, healthy: Healthy, timeout: float, retiring: Retiring
    ) -> None:
        """Replace the instances one by one by instances of ``new``: start a new one, wait
        until ``healthy`` says so, stop the old one of the same index. When a new instance
        does not become healthy within ``timeout`` (or exits first), stop it, bring back the
        old instances already replaced, and raise ``unavailable``. ``retiring`` runs before
        a healthy instance is stopped."""
        old, old_spec = list(self.members), self.spec
        for i in range(max(len(old), new.instances)):
            if i < new.instances:
                problem = await self._bring_up(new, i, healthy, timeout)
                if problem:
                    await self._roll_back(old_spec, i, healthy, timeout)
                    raise unavailable(
                        "runtime",
                        f"update of {new.name} to {new.version} stopped: new instance {i} "
                        f"{problem}; the old instances ({old_spec.version}) keep running",
                    )
            if i < len(old):
                await retiring(old[i])
                await self._retire(old[i])
        self.spec = new
        self.hooks.on_change()

    async def _bring_up(
        self, spec: ServiceSpec, index: int, healthy: Healthy, timeout: float
    ) -> str:
        """Start instance ``index`` of ``spec``; "" once healthy, else what went wrong (the
        instance is then stopped again)."""
        if self._stopping:
            raise unavailable("runtime", f"{spec.name} is being stopped")
        member = Supervisor(spec, self.options, self.hooks, index)
        self.members.append(member)
        member.start()
        problem = await _wait_healthy(member, healthy, timeout)
        if problem or self._stopping:
            await self._retire(member)
        if self._stopping:
            raise unavailable("runtime", f"{spec.name} is being stopped")
        return problem

    async def _retire(self, member: Supervisor) -> None:
        if member in self.members:
            self.members.remove(member)
        await member.stop()
        self.hooks.on_change()

    async def _roll_back(
        self, old: ServiceSpec, failed_at: int, healthy: Healthy, timeout: float
    ) -> None:
        """Put instances ``0 .. failed_at-1`` of ``old`` back in place of the new ones."""
        for index in range(failed_at):
            replacement = [m for m in self.members if m.index == index and m.spec is not old]
            if index < old.instances:
                member = Supervisor(old, self.options, self.hooks, index)
                self.members.append(member)
                member.start()
                problem = await _wait_healthy(member, healthy, timeout)
                if problem:
                    member.note(f"rolled back, but {problem}; its supervisor keeps trying")
            for new in replacement:
                await self._retire(new)


async def _wait_healthy(member: Supervisor, healthy: Healthy, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if member.status in ("backoff", "crashed"):
            return f"{member.error or 'exited'} before it became ready"
        if member.status == "stopped":
            return "was stopped before it became ready"
        if member.pid() is not None and await healthy(member):
            return ""
        await asyncio.sleep(_POLL)
    return f"was not ready (registered) within {timeout:g} s"
