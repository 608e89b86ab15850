"""The background purge every store backend runs: expired records are dropped on a timer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..errors import MicroError

__all__ = ["purge_forever"]

log = logging.getLogger("micro.store")


async def purge_forever(purge: Callable[[], Awaitable[int]], interval: float) -> None:
    """Call ``purge()`` every ``interval`` seconds until cancelled; a failed round is logged
    and the next one tried (reads never return expired records meanwhile)."""
    while True:
        await asyncio.sleep(interval)
        try:
            dropped = await purge()
        except MicroError as err:
            log.warning("store: purging expired records failed: %s", err.detail)
        else:
            if dropped:
                log.debug("store: purged %d expired records", dropped)
