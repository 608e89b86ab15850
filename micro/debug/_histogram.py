"""A fixed-bucket latency histogram: constant memory, O(1) record, ~2.5% relative error."""

from __future__ import annotations

import math

__all__ = ["Histogram"]

_GROWTH = 1.05  # each bucket's upper bound is 5% above the previous one
_SCALE = 1 / math.log(_GROWTH)
_MIN = 1e-6  # samples below 1 µs land in bucket 0
_BUCKETS = int(math.log(1000.0 / _MIN) * _SCALE) + 2  # up to 1000 s, then the last bucket
_log = math.log


def _upper(index: int) -> float:
    """The upper bound (seconds) of bucket ``index``."""
    return _MIN * _GROWTH**index


class Histogram:
    """Latency samples in seconds, bucketed logarithmically (HDR-like): a percentile is the
    geometric middle of its bucket, clamped to the exact minimum and maximum seen."""

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets = [0] * _BUCKETS
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float) -> None:
        """Add one sample."""
        if seconds > _MIN:
            index = int(_log(seconds / _MIN) * _SCALE) + 1
            if index >= _BUCKETS:
                index = _BUCKETS - 1
        else:
            index = 0
        self.buckets[index] += 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds < self.min:
            self.min = seconds

    def percentile(self, p: float) -> float:
        """The latency (seconds) below which ``p`` percent of the samples fall; 0 when empty."""
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} is not between 0 and 100")
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(self.count * p / 100))
        if rank >= self.count:
            return self.max
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                if index == 0:  # under 1 µs: the exact minimum is as good as any
                    return self.min
                if index == _BUCKETS - 1:  # the overflow bucket has no upper bound
                    return self.max
                value = math.sqrt(_upper(index - 1) * _upper(index))
                return min(max(value, self.min), self.max)
        return self.max

    @property
    def mean(self) -> float:
        """The mean sample (seconds); 0 when empty."""
        return self.total / self.count if self.count else 0.0
