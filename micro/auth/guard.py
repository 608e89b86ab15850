"""The guard: auth enforced in every service, before its handler runs.

Each endpoint is wrapped (outermost middleware) so that a call

1. carrying ``authorization: Bearer <access token>`` has the token verified locally (no call
   to the auth service: :class:`~micro.auth.verify.Verifier` with the published public keys,
   verified tokens cached until they expire) — an invalid token is refused with 401 even
   for a public endpoint, so a client learns its token is bad;
2. is checked against the rules (:class:`~micro.auth.rules.RuleSet`; an endpoint marked
   ``@public`` adds a rule granting everyone) — ``unauthorized`` without an account,
   ``forbidden`` with one;
3. runs with ``ctx.account`` set to the verified claims (``None`` for anonymous calls).

Rules are loaded when the service starts and reloaded every ``refresh`` seconds, so a rule
created with ``micro auth create rule`` applies everywhere within that time. Until the first
load succeeds only public endpoints answer; everything else gets ``unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..context import Context
from ..errors import MicroError, unavailable
from . import ID, Claims, Rule
from .rules import RuleSet
from .verify import Verifier

__all__ = ["Guard", "bearer"]

log = logging.getLogger("micro.auth")

HandlerFunc = Callable[[Context, Any], Awaitable[Any]]


def bearer(header: str) -> str:
    """The token of an ``authorization`` value (``Bearer`` prefix optional)."""
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return header.strip()


class Guard:
    """Verifies callers and applies the rules for the services of one process."""

    def __init__(
        self,
        verifier: Verifier,
        rules: Callable[[], Awaitable[Sequence[Rule]]],
        *,
        namespace: str | None = None,
        refresh: float = 10.0,
    ) -> None:
        self.verifier = verifier
        self._load_rules = rules
        self.namespace = namespace  # None: accept tokens of every namespace (core services)
        self.refresh = refresh
        self.rules: RuleSet | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the rules (retrying in the background if the auth service is not there yet)
        and keep reloading them."""
        try:
            await self.reload()
        except (MicroError, OSError) as exc:
            log.warning("auth: cannot load the rules yet (%s); retrying", exc)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._reload_loop())

    async def reload(self) -> None:
        """Load the rules now."""
        self.rules = RuleSet(list(await self._load_rules()))

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh if self.rules is not None else 1.0)
            try:
                await self.reload()
            except (MicroError, OSError) as exc:
                log.debug("auth: cannot reload the rules (%s)", exc)

    async def caller(self, ctx: Context) -> Claims | None:
        """The verified account of the call in ``ctx`` (None without a token)."""
        header = ctx.metadata.get("authorization")
        if not header:
            return None
        return await self.verifier.verify_async(bearer(header), namespace=self.namespace)

    def check(self, claims: Claims | None, service: str, endpoint: str, public: bool) -> None:
        """Raise unless ``claims`` may call ``service``/``endpoint``."""
        rules = self.rules
        if rules is None:
            if public:
                return
            raise unavailable(ID, "the auth rules are not loaded yet; retry shortly")
        rules.check(claims, service, endpoint, public=public)

    def middleware(
        self, service: str, endpoint: str, public: bool
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """The middleware enforcing auth on ``service``/``endpoint``."""

        def wrap(call: HandlerFunc) -> HandlerFunc:
            async def guarded(ctx: Context, request: Any) -> Any:
                claims = await self.caller(ctx) if "authorization" in ctx.metadata else None
                self.check(claims, service, endpoint, public)
                ctx.account = claims
                return await call(ctx, request)

            return guarded

        return wrap

    async def close(self) -> None:
        """Stop reloading the rules."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
