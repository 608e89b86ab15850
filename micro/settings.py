"""Typed settings read once from the environment (``MICRO_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_SERVER", "Settings"]

DEFAULT_SERVER = "127.0.0.1:8081"


@dataclass(frozen=True)
class Settings:
    """Where the server is, where state lives, which profile runs.

    ``MICRO_SERVER``: RPC address of ``micro server`` (default ``127.0.0.1:8081``).
    ``MICRO_DATA_DIR``: local state (default ``~/.micro``).
    ``MICRO_PROFILE``: backend bundle (``local``).
    ``MICRO_SERVICE_ADDRESS``: where a service listens (default ``127.0.0.1:0``, a free port).
    ``MICRO_NAMESPACE``: the tenant a service belongs to (default ``micro``); the default
    store database.
    ``MICRO_TLS``: ``1`` runs RPC over mutual TLS with certificates from the identity
    service (default off; ``1``/``true``/``yes``/``on`` turn it on).
    """

    server: str = DEFAULT_SERVER
    data_dir: Path = field(default_factory=lambda: Path("~/.micro").expanduser())
    profile: str = "local"
    service_address: str = "127.0.0.1:0"
    namespace: str = "micro"
    tls: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read and validate the settings from ``env`` (default: ``os.environ``)."""
        env = dict(os.environ) if env is None else env
        settings = cls(
            server=env.get("MICRO_SERVER") or DEFAULT_SERVER,
            data_dir=Path(env.get("MICRO_DATA_DIR") or "~/.micro").expanduser(),
            profile=env.get("MICRO_PROFILE") or "local",
            service_address=env.get("MICRO_SERVICE_ADDRESS") or "127.0.0.1:0",
            namespace=env.get("MICRO_NAMESPACE") or "micro",
            tls=_flag(env, "MICRO_TLS"),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ValueError`` naming the setting that is wrong."""
        for name in ("server", "service_address"):
            value = getattr(self, name)
            _, sep, port = value.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError(f"MICRO_{name.upper()}={value!r} is not host:port")
        if not self.namespace.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"MICRO_NAMESPACE={self.namespace!r}: use letters, digits, - and _")
        if self.profile not in ("local", "cluster"):
            raise ValueError(f"MICRO_PROFILE={self.profile!r} is unknown (known: local, cluster)")


def _flag(env: dict[str, str], name: str) -> bool:
    value = (env.get(name) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name}={env[name]!r}: use 1 or 0")
