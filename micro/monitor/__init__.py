"""Monitor: health of every registered node, user-defined checks, alerts.

**Nodes.** :class:`~micro.monitor.monitor.Monitor` probes every node of every registered
service each ``interval`` seconds with a protocol-level PING (:func:`~micro.monitor.probe.probe`;
no endpoint needed, so every micro service answers). A node that fails ``failures``
consecutive probes (default 3) is marked ``down``, deregistered, and an alert ``node_down``
is published. The monitor keeps probing a down node (remembering the service info it had);
when it answers again it is marked ``up``, registered again with that info (TTL 15 s, as
services heartbeat; a live service refreshes it itself) and ``node_up`` is published. A node
that leaves the registry while up (deregistered, expired) is forgotten; a down node is
forgotten after ``forget_after`` seconds.

**Checks.** A :class:`Check` calls an RPC endpoint (``kind="rpc"``: ``target.service``,
``target.endpoint``, ``target.request``) or GETs a URL (``kind="http"``: ``target.url``)
every ``interval`` seconds and compares the result with :class:`Expect`:

- ``status``: the HTTP status, or for RPC 200 on success and the error's status otherwise.
  Without it, success is required (RPC: no error; HTTP: status below 400).
- ``field``: a dotted path into the JSON response (``a.b.0.c``; list items by index) that
  must exist; with ``equals`` its value must equal that JSON value.
- ``max_latency_ms``: the call must take at most that long.

Each run appends a :class:`CheckResult` (time, ok, latency, detail) to the check's history,
which keeps the newest ``history`` results (default 100). A check that starts failing
publishes ``check_failed``; one that passes again publishes ``check_recovered``.

**Alerts** go to the topic :data:`ALERT_TOPIC` of an events backend, as JSON
(:class:`Alert`).

**Durability.** Given a :class:`~micro.store.Store`, checks and their history live in its
table ``monitor`` of database ``micro`` and are loaded by ``Monitor.start()``; without one
they live in memory. Node state is always in memory (it is rebuilt by probing).

**Limits** (``bad_request`` naming the field): names match ``[A-Za-z0-9_.-]{1,128}``; at most
:data:`MAX_CHECKS` checks; ``interval`` between :data:`MIN_INTERVAL` and
:data:`MAX_INTERVAL` seconds; ``timeout`` positive, at most :data:`MAX_TIMEOUT`; URLs are
``http``/``https`` with a host; a request encodes to at most :data:`MAX_REQUEST` bytes of
JSON; ``status`` 100-599; ``max_latency_ms`` positive; history ``limit`` 1 to
:data:`MAX_HISTORY`. A second check with an existing name is a ``conflict``; an unknown name
is ``not_found``.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import msgspec

__all__ = [
    "ALERT_TOPIC",
    "MAX_CHECKS",
    "MAX_HISTORY",
    "MAX_INTERVAL",
    "MAX_REQUEST",
    "MAX_TIMEOUT",
    "MIN_INTERVAL",
    "NAME_PATTERN",
    "Alert",
    "Check",
    "CheckResult",
    "CheckStatus",
    "Expect",
    "NodeHealth",
    "Target",
]

ALERT_TOPIC: Final = "monitor.alerts"
"""Where alerts are published."""
NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
"""What check names look like."""
MAX_CHECKS: Final = 1000
MAX_HISTORY: Final = 1000
MIN_INTERVAL: Final = 0.05
MAX_INTERVAL: Final = 86400.0
MAX_TIMEOUT: Final = 60.0
MAX_REQUEST: Final = 64 * 1024


class Target(msgspec.Struct, omit_defaults=True):
    """What a check calls: an RPC endpoint with a JSON request, or a URL."""

    service: str = ""
    endpoint: str = ""
    request: Any = None  # JSON value; None sends {}
    url: str = ""


class Expect(msgspec.Struct, omit_defaults=True):
    """What a passing result looks like (every given condition must hold)."""

    status: int | None = None
    field: str | None = None
    equals: Any = msgspec.UNSET  # any JSON value (null included); unset: only existence
    max_latency_ms: float | None = None


class Check(msgspec.Struct, omit_defaults=True):
    """A user-defined check, run every ``interval`` seconds with a ``timeout``."""

    name: str
    kind: str  # "rpc" | "http"
    target: Target
    interval: float = 10.0
    timeout: float = 5.0
    expect: Expect = msgspec.field(default_factory=Expect)


class CheckResult(msgspec.Struct):
    """One run of a check."""

    time: float
    ok: bool
    latency_ms: float
    detail: str = ""


class CheckStatus(msgspec.Struct):
    """A check with its latest result (None before its first run)."""

    check: Check
    last: CheckResult | None = None


class NodeHealth(msgspec.Struct):
    """What the monitor knows about one node."""

    service: str
    version: str
    node: str
    address: str
    state: Literal["up", "down"]
    failures: int = 0
    latency_ms: float | None = None
    checked: float | None = None
    error: str = ""


class Alert(msgspec.Struct, omit_defaults=True):
    """The JSON body of an event on :data:`ALERT_TOPIC`."""

    type: Literal["node_down", "node_up", "check_failed", "check_recovered"]
    time: float
    detail: str = ""
    service: str = ""
    node: str = ""
    address: str = ""
    check: str = ""
