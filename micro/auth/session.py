"""Sessions: how a service or the CLI holds a valid access token.

A :class:`Session` logs in once (an account id and secret, or an API key), then keeps the
access token fresh in the background: at two thirds of its lifetime it is refreshed with the
refresh token (rotating it), or — without one, or when refreshing fails — obtained again from
the original credential. :meth:`Session.header` gives the ``authorization`` metadata value
for the next call, synchronously, so the client adds it without an await.

:func:`credential_from_env` finds what a service logs in with:

1. ``MICRO_AUTH_ID`` + ``MICRO_AUTH_SECRET`` (+ ``MICRO_AUTH_NAMESPACE``): a service account;
   the runtime gives one to every service it starts;
2. ``MICRO_API_KEY``: an API key;
3. the server's local credential file ``<data dir>/credentials`` (an admin API key, mode
   0600, written by ``micro server``): on the server's own machine, like a local kubeconfig.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from ..errors import MicroError
from . import DEFAULT_NAMESPACE, Tokens

__all__ = [
    "API_KEY_PREFIX",
    "CREDENTIALS_FILE",
    "Credential",
    "Session",
    "credential_from_env",
    "read_local_credential",
    "write_local_credential",
]

log = logging.getLogger("micro.auth")

API_KEY_PREFIX = "mk_"
"""How API keys begin (so an ``Authorization: Bearer`` value can be told from a JWT)."""
CREDENTIALS_FILE = "credentials"
"""The local admin credential's file name in the server's data dir."""


@dataclass(frozen=True)
class Credential:
    """What a session logs in with: an account id and secret, or an API key."""

    id: str = ""
    secret: str = ""
    api_key: str = ""
    namespace: str = DEFAULT_NAMESPACE

    def __repr__(self) -> str:  # never print secrets
        who = self.id or "api key"
        return f"Credential({who!r}, namespace={self.namespace!r})"


class _LocalFile(msgspec.Struct):
    api_key: str
    server: str = ""


def write_local_credential(data_dir: Path, api_key: str, server: str) -> Path:
    """Write the local admin credential, readable by its owner only."""
    path = data_dir / CREDENTIALS_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.encode(_LocalFile(api_key, server)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_local_credential(data_dir: Path) -> Credential | None:
    """The local admin credential in ``data_dir``, if there is a readable one."""
    try:
        data = (data_dir / CREDENTIALS_FILE).read_bytes()
        return Credential(api_key=msgspec.json.decode(data, type=_LocalFile).api_key)
    except (OSError, msgspec.DecodeError):
        return None


def credential_from_env(data_dir: Path, env: Mapping[str, str] | None = None) -> Credential | None:
    """The credential a service uses, by the order in the module docstring."""
    env = os.environ if env is None else env
    namespace = env.get("MICRO_AUTH_NAMESPACE") or env.get("MICRO_NAMESPACE") or DEFAULT_NAMESPACE
    if env.get("MICRO_AUTH_ID") and env.get("MICRO_AUTH_SECRET"):
        return Credential(env["MICRO_AUTH_ID"], env["MICRO_AUTH_SECRET"], namespace=namespace)
    if env.get("MICRO_API_KEY"):
        return Credential(api_key=env["MICRO_API_KEY"], namespace=namespace)
    return read_local_credential(data_dir)


Login = Callable[[Credential], Awaitable[Tokens]]
Refresh = Callable[[str], Awaitable[Tokens]]


class Session:
    """A valid access token for ``credential``, renewed in the background."""

    def __init__(
        self,
        credential: Credential,
        login: Login,
        refresh: Refresh,
        *,
        clock: Callable[[], float] = time.time,
        retry: float = 1.0,
    ) -> None:
        self.credential = credential
        self._login = login
        self._refresh = refresh
        self._clock = clock
        self._retry = retry
        self._tokens: Tokens | None = None
        self._header: str | None = None
        self._issued = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def tokens(self) -> Tokens | None:
        """The current tokens (None before :meth:`start`)."""
        return self._tokens

    def header(self) -> str | None:
        """``Bearer <access token>`` for the next call."""
        return self._header

    def _set(self, tokens: Tokens) -> None:
        self._tokens, self._issued = tokens, self._clock()
        self._header = f"Bearer {tokens.access_token}"

    async def start(self) -> None:
        """Log in (raises the auth service's error if the credential is refused), then keep
        the token fresh until :meth:`close`."""
        self._set(await self._login(self.credential))
        self.keep_trying()

    def keep_trying(self) -> None:
        """Log in in the background until it works (then keep the token fresh)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._renew_loop())

    async def renew(self) -> None:
        """Refresh now (with the refresh token, else by logging in again)."""
        tokens = self._tokens
        if tokens is not None and tokens.refresh_token:
            try:
                self._set(await self._refresh(tokens.refresh_token))
                return
            except MicroError as exc:
                log.info("auth: refresh failed (%s); logging in again", exc.detail)
        self._set(await self._login(self.credential))

    def _due_in(self) -> float:
        tokens = self._tokens
        if tokens is None:
            return 0.0
        lifetime = max(tokens.expiry - self._issued, 0.0)
        return max(self._issued + lifetime * 2 / 3 - self._clock(), 0.0)

    async def _renew_loop(self) -> None:
        delay = self._retry
        while True:
            await asyncio.sleep(self._due_in())
            try:
                await self.renew()
                delay = self._retry
            except (MicroError, OSError) as exc:
                log.warning("auth: cannot renew the access token (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        """Stop renewing."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
