"""A fake wall clock for conformance suites: time moves only when a test moves it."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A callable clock (``clock() -> float``) standing at :attr:`now` until advanced."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds
