"""Durations on the command line: ``90`` (seconds), ``500ms``, ``30s``, ``5m``, ``2h``, ``1d``."""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit (``ms``, ``s``, ``m``, ``h``,
    ``d``; none means seconds). Raises ``ValueError`` saying what is accepted."""
    match = _DURATION.fullmatch(text.strip().lower())
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else math.nan
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration (e.g. 90, 500ms, 30s, 5m, 2h, 1d)")
    return seconds
