"""The gateway's structured access log: one JSON object per request.

Written at INFO on the logger ``micro.gateway.access`` (so the server's log configuration
decides whether it is kept), as the message text, and also attached to the record as
``record.access`` (a dict) for handlers that format records themselves. Fields::

    {"method": "GET", "path": "/users/42", "status": 200, "duration_ms": 1.93,
     "service": "users", "endpoint": "Users.Get", "account": "micro/alice",
     "remote": "127.0.0.1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}

``path`` has no query string, and no header is logged: neither ``Authorization`` nor cookies
(nor API keys or tokens passed in a query) ever reach the log. ``account`` is
``namespace/id`` of a verified caller, ``-`` otherwise; ``service`` and ``endpoint`` are ``-``
for requests not resolved to one.
"""

from __future__ import annotations

import logging

import msgspec

__all__ = ["AccessRecord", "log_access", "logger"]

logger = logging.getLogger("micro.gateway.access")


class AccessRecord(msgspec.Struct):
    """One line of the access log."""

    method: str
    path: str
    status: int
    duration_ms: float
    service: str
    endpoint: str
    account: str
    remote: str
    trace_id: str


_encode = msgspec.json.Encoder().encode


def access_enabled() -> bool:
    """Whether access lines are written (INFO on the access logger): build none otherwise."""
    return logger.isEnabledFor(logging.INFO)


def log_access(record: AccessRecord) -> None:
    """Write ``record`` (when INFO is enabled on the access logger)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    logger.info(_encode(record).decode(), extra={"access": msgspec.structs.asdict(record)})
