"""CORS for the gateway: which web origins may call it from a browser.

Configured with a list of origins (``Gateway(cors_origins=[...])``), compared exactly
(scheme, host and port, case-insensitively, a trailing ``/`` ignored). ``"*"`` allows any
origin but without credentials (``Access-Control-Allow-Origin: *``), since answering any site
with credentials would let every page read the user's data through the ``micro-token`` cookie.

- A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from an
  allowed origin answers ``204`` with ``Access-Control-Allow-Origin`` (the origin),
  ``-Allow-Methods``, ``-Allow-Headers`` (``Authorization``, ``Content-Type``,
  ``Micro-Timeout``, ``traceparent`` and any requested ``Micro-*`` header, since those are
  forwarded as call metadata), ``-Allow-Credentials: true``, ``-Max-Age`` and
  ``Vary: Origin``. From any other origin it answers ``403`` with no CORS header.
- Other requests from an allowed origin get ``Access-Control-Allow-Origin``,
  ``-Allow-Credentials`` and ``-Expose-Headers`` (``Retry-After``); from other origins they are
  served without CORS headers (the browser then hides the answer from the page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["ALLOW_HEADERS", "ALLOW_METHODS", "Cors"]

ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ALLOW_HEADERS = ("Authorization", "Content-Type", "Micro-Timeout", "traceparent")
EXPOSE_HEADERS = ("Retry-After",)
MAX_AGE = 600


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class Cors:
    """The CORS policy of one gateway."""

    __slots__ = ("any", "origins")

    def __init__(self, origins: Sequence[str]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(_normal(o) for o in origins if o != "*")

    @property
    def enabled(self) -> bool:
        """False when no origin is configured (no CORS header is ever sent)."""
        return self.any or bool(self.origins)

    def allowed(self, origin: str | None) -> bool:
        """Whether a page of ``origin`` may call the gateway."""
        if not origin or not self.enabled:
            return False
        return self.any or _normal(origin) in self.origins

    @staticmethod
    def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
        """Whether a request is a CORS preflight."""
        return (
            method == "OPTIONS"
            and bool(headers.get("Origin"))
            and bool(headers.get("Access-Control-Request-Method"))
        )

    def _origin_headers(self, origin: str) -> dict[str, str]:
        if self.any and _normal(origin) not in self.origins:
            return {"Access-Control-Allow-Origin": "*"}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def preflight(self, origin: str, requested_headers: str | None) -> dict[str, str]:
        """The headers of a ``204`` answer to an allowed preflight."""
        allow = list(ALLOW_HEADERS)
        known = {h.lower() for h in allow}
        for name in (requested_headers or "").split(","):
            name = name.strip()
            if name.lower().startswith("micro-") and name.lower() not in known:
                allow.append(name)
                known.add(name.lower())
        headers = self._origin_headers(origin)
        headers.update(
            {
                "Access-Control-Allow-Methods": ", ".join(ALLOW_METHODS),
                "Access-Control-Allow-Headers": ", ".join(allow),
                "Access-Control-Max-Age": str(MAX_AGE),
            }
        )
        headers["Vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        return headers

    def response_headers(self, origin: str) -> dict[str, str]:
        """The headers added to an answer to an allowed origin."""
        headers = self._origin_headers(origin)
        headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
        return headers
