"""Token-bucket rate limits: per client IP and per account, with bounded memory.

Each key (an IP address, or ``namespace/account``) has a bucket of ``burst`` tokens refilled at
``rate`` tokens a second; a request takes one token or is refused with the seconds until one
is back (the gateway answers ``429 Too Many Requests`` with that as ``Retry-After``, rounded
up to whole seconds). A rate of 0 disables the limit.

Memory stays bounded: buckets are kept least recently used first; a bucket that has refilled
to ``burst`` is the same as no bucket, so such buckets are dropped from the old end as new
keys arrive, and past ``max_keys`` the least recently used bucket is dropped whatever its
level (an attacker rotating addresses then only resets buckets of idle clients).

The clock is injectable (``clock=``, seconds, monotonic) so tests move time by hand.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Buckets", "retry_after"]


class Buckets:
    """Token buckets keyed by a string."""

    __slots__ = ("_buckets", "burst", "clock", "max_keys", "rate")

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("rate and burst must not be negative")
        if rate > 0 and burst < 1:
            raise ValueError("burst must be at least 1 when a rate is set")
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    @property
    def enabled(self) -> bool:
        """False when the rate is 0 (every request passes)."""
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when granted, else the seconds until one is back."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        buckets = self._buckets
        held = buckets.pop(key, None)
        if held is None:
            tokens = self.burst
            self._evict(now)
        else:
            tokens = min(self.burst, held[0] + (now - held[1]) * self.rate)
        if tokens >= 1.0:
            buckets[key] = (tokens - 1.0, now)
            return 0.0
        buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _evict(self, now: float) -> None:
        """Drop full (idle) buckets from the least recently used end, and any beyond
        ``max_keys - 1`` to make room for one more."""
        buckets = self._buckets
        while buckets:
            key, (tokens, when) = next(iter(buckets.items()))
            if tokens + (now - when) * self.rate < self.burst and len(buckets) < self.max_keys:
                break
            del buckets[key]


def retry_after(wait: float) -> int:
    """``Retry-After`` for a wait of ``wait`` seconds: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))
