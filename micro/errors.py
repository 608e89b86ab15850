"""The one error shape of the platform.

Every failure that crosses a process boundary is a :class:`MicroError`, serialised on the
wire as ``{id, code, detail, status}`` (go-micro's ``errors.Error``)::

    Exception
    └── MicroError                 id, code, detail, status
        (constructors)             bad_request 400 · unauthorized 401 · forbidden 403
                                   not_found 404 · conflict 409 · too_large 413
                                   too_many_requests 429
                                   internal 500 · unavailable 503 · timeout 504

``code`` is a short machine-readable word, ``status`` the HTTP status the gateway answers
with, ``id`` names the service (or component) that raised it, ``detail`` says what went wrong
for a human. Errors that are the caller's fault have a 4xx status (:attr:`MicroError.is_client`).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "MicroError",
    "WireError",
    "bad_request",
    "conflict",
    "forbidden",
    "internal",
    "not_found",
    "timeout",
    "too_large",
    "too_many_requests",
    "unauthorized",
    "unavailable",
]


class WireError(msgspec.Struct, frozen=True, omit_defaults=True):
    """The serialised form of a :class:`MicroError`."""

    id: str = ""
    code: str = "internal"
    detail: str = ""
    status: int = 500


class MicroError(Exception):
    """An error that travels over RPC and maps to an HTTP status."""

    __slots__ = ("code", "detail", "id", "status")

    def __init__(self, id: str, code: str, detail: str, status: int) -> None:
        super().__init__(detail)
        self.id = id
        self.code = code
        self.detail = detail
        self.status = status

    @property
    def is_client(self) -> bool:
        """True when the caller is at fault (a 4xx status)."""
        return 400 <= self.status < 500

    def to_wire(self) -> WireError:
        """The wire form of this error."""
        return WireError(id=self.id, code=self.code, detail=self.detail, status=self.status)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: ``{id, code, detail, status}``."""
        return {"id": self.id, "code": self.code, "detail": self.detail, "status": self.status}

    @classmethod
    def from_wire(cls, err: WireError) -> MicroError:
        """Rebuild an error received from the wire."""
        return cls(err.id, err.code, err.detail, err.status)

    def __repr__(self) -> str:
        return (
            f"MicroError(id={self.id!r}, code={self.code!r}, status={self.status}, "
            f"detail={self.detail!r})"
        )

    def __str__(self) -> str:
        where = f"{self.id}: " if self.id else ""
        return f"{where}{self.detail} ({self.code}, {self.status})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (MicroError, (self.id, self.code, self.detail, self.status))


def bad_request(id: str, detail: str) -> MicroError:
    """The request is malformed or fails validation (400)."""
    return MicroError(id, "bad_request", detail, 400)


def unauthorized(id: str, detail: str) -> MicroError:
    """No valid credentials were presented (401)."""
    return MicroError(id, "unauthorized", detail, 401)


def forbidden(id: str, detail: str) -> MicroError:
    """The caller is known but may not do this (403)."""
    return MicroError(id, "forbidden", detail, 403)


def not_found(id: str, detail: str) -> MicroError:
    """The service, endpoint or resource does not exist (404)."""
    return MicroError(id, "not_found", detail, 404)


def conflict(id: str, detail: str) -> MicroError:
    """The request conflicts with the current state (409)."""
    return MicroError(id, "conflict", detail, 409)


def too_large(id: str, detail: str) -> MicroError:
    """The request is larger than allowed (413)."""
    return MicroError(id, "too_large", detail, 413)


def too_many_requests(id: str, detail: str) -> MicroError:
    """The caller sent too many requests (or failed too many logins); retry later (429)."""
    return MicroError(id, "too_many_requests", detail, 429)


def internal(id: str, detail: str) -> MicroError:
    """Something failed on the server side (500)."""
    return MicroError(id, "internal", detail, 500)


def unavailable(id: str, detail: str) -> MicroError:
    """No node can serve the call right now (503)."""
    return MicroError(id, "unavailable", detail, 503)


def timeout(id: str, detail: str) -> MicroError:
    """The deadline passed before an answer came (504)."""
    return MicroError(id, "timeout", detail, 504)
