"""Named contexts of the CLI (like a kubeconfig): which server, which namespace, which login.

The file ``<data dir>/envs.json`` (the data dir is ``MICRO_DATA_DIR``, else ``~/.micro``)
holds the envs and the name of the current one::

    {"current": "local",
     "envs": {"local": {"server": "127.0.0.1:8081"},
              "prod": {"server": "10.0.0.5:8081", "namespace": "micro", "account": "alice",
                       "refresh_token": "...", "access_token": "...", "expiry": 1700000000.0}}}

A missing file means only the env ``local`` (the default server). The file holds session
tokens — never a password or an API key — and is written atomically (temporary file, fsync,
rename) with mode 0600. ``MICRO_ENV`` picks an env for one command without changing the
current one; ``MICRO_SERVER`` overrides the env's server.

:func:`cli_credential` decides what every CLI command calls with, first match wins:

1. ``MICRO_API_KEY``: exchanged for an access token;
2. ``MICRO_AUTH_ID`` + ``MICRO_AUTH_SECRET`` (namespace ``MICRO_AUTH_NAMESPACE``, else
   ``MICRO_NAMESPACE``, else the env's): a login;
3. the current env's saved login (``micro login``): its access token while it is valid for
   more than 30 s, else it is refreshed and the rotated tokens are saved. Refreshes are
   serialised across processes by a lock file, so two commands started at once do not
   present the same refresh token twice (which the auth service treats as a stolen token and
   answers by ending the session);
4. in the env ``local`` only: the local admin credential ``micro server`` keeps in
   ``<data dir>/credentials``;
5. nothing: the command calls anonymously.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from ..auth import DEFAULT_NAMESPACE, Tokens
from ..settings import DEFAULT_SERVER

if TYPE_CHECKING:
    from ..auth.rpc import RpcAuth

__all__ = [
    "ENVS_FILE",
    "LOCAL",
    "MIN_VALIDITY",
    "Env",
    "Envs",
    "check_env_name",
    "check_server",
    "cli_credential",
    "current_env",
    "data_dir",
    "edit_envs",
    "envs_path",
    "load_envs",
    "save_envs",
    "server_for_cli",
    "session_tokens",
]

ENVS_FILE = "envs.json"
LOCAL = "local"
"""The env that always exists: this machine's server, with its local admin credential."""
MIN_VALIDITY = 30.0
"""A saved access token valid for less than this many more seconds is refreshed first."""

_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_REFUSED = ("unauthorized", "forbidden")


class Env(msgspec.Struct, frozen=True, omit_defaults=True):
    """One named context: a server, a namespace and, after ``micro login``, the session."""

    server: str
    namespace: str = DEFAULT_NAMESPACE
    account: str = ""
    refresh_token: str = ""
    access_token: str = ""
    expiry: float = 0.0

    @property
    def logged_in(self) -> bool:
        """Whether a session (refresh token) is saved."""
        return bool(self.refresh_token)

    def with_tokens(self, tokens: Tokens) -> Env:
        """This env holding ``tokens`` (the refresh token kept when none was returned)."""
        return msgspec.structs.replace(
            self,
            access_token=tokens.access_token,
            expiry=tokens.expiry,
            refresh_token=tokens.refresh_token or self.refresh_token,
        )

    def forget(self) -> Env:
        """This env without its session."""
        return Env(self.server, self.namespace)


def _default_envs() -> dict[str, Env]:
    return {LOCAL: Env(DEFAULT_SERVER)}


class Envs(msgspec.Struct):
    """The content of ``envs.json``."""

    current: str = LOCAL
    envs: dict[str, Env] = msgspec.field(default_factory=_default_envs)


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The CLI's data dir: ``MICRO_DATA_DIR``, else ``~/.micro`` (as :class:`Settings`)."""
    env = os.environ if environ is None else environ
    return Path(env.get("MICRO_DATA_DIR") or "~/.micro").expanduser()


def envs_path(directory: Path | None = None) -> Path:
    """Where the envs are kept."""
    return (directory or data_dir()) / ENVS_FILE


def check_server(value: str, what: str = "--server") -> str:
    """``value`` if it is ``host:port``, else ``ValueError`` naming ``what``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{what} {value!r} is not host:port")
    return value


def check_env_name(name: str) -> str:
    """``name`` if it can name an env, else ``ValueError``."""
    if not _ENV_NAME.match(name):
        raise ValueError(
            f"env name {name!r}: use up to 63 letters, digits, '.', '-' and '_', "
            "starting with a letter or digit"
        )
    return name


def load_envs(directory: Path | None = None) -> Envs:
    """The saved envs (only ``local`` when there is no file). ``ValueError`` if the file is
    unreadable or not valid."""
    path = envs_path(directory)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Envs()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        envs = msgspec.json.decode(data, type=Envs)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path} is not valid ({exc}): fix or delete it") from None
    envs.envs.setdefault(LOCAL, Env(DEFAULT_SERVER))
    return envs


def save_envs(envs: Envs, directory: Path | None = None) -> None:
    """Write ``envs`` atomically, readable by its owner only."""
    path = envs_path(directory)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{ENVS_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates the file with mode 0600
            f.write(msgspec.json.format(msgspec.json.encode(envs), indent=2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def current_env(directory: Path | None = None) -> tuple[str, Env]:
    """The name and content of the env in use: ``MICRO_ENV``, else the current one."""
    envs = load_envs(directory)
    name = os.environ.get("MICRO_ENV") or envs.current
    env = envs.envs.get(name)
    if env is None:
        where = "MICRO_ENV names" if os.environ.get("MICRO_ENV") else "the current env is"
        raise ValueError(f"{where} {name!r}, which does not exist (see `micro env`)")
    return name, env


def server_for_cli() -> str:
    """``MICRO_SERVER`` if set, else the current env's server (``ValueError`` if invalid)."""
    override = os.environ.get("MICRO_SERVER")
    if override:
        return check_server(override, "MICRO_SERVER")
    name, env = current_env()
    return check_server(env.server, f"the server of env {name!r}")


def _open_lock(directory: Path | None) -> int:
    path = envs_path(directory).with_name("envs.lock")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def edit_envs(directory: Path | None = None) -> Iterator[Envs]:
    """The saved envs, to change in place: saved when the block ends without an error.
    Exclusive across processes (an advisory lock on ``envs.lock``)."""
    import fcntl

    fd = _open_lock(directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        envs = load_envs(directory)
        yield envs
        save_envs(envs, directory)
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.asynccontextmanager
async def _envs_lock(directory: Path | None = None) -> AsyncIterator[None]:
    """The lock of :func:`edit_envs`, held across awaits (taken without blocking the loop)."""
    import fcntl

    fd = _open_lock(directory)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def session_tokens(
    auth: RpcAuth,
    name: str,
    *,
    clock: Callable[[], float] = time.time,
    directory: Path | None = None,
) -> Tokens | None:
    """The saved session of env ``name``, refreshed (and saved) when its access token is
    valid for less than :data:`MIN_VALIDITY` s; None when nobody is logged in there.

    A refused refresh forgets the session and raises the auth service's error; other errors
    (the server cannot be reached) leave it as it was."""
    from ..errors import MicroError

    env = load_envs(directory).envs.get(name)
    if env is None or not env.logged_in:
        return None
    if env.access_token and env.expiry - clock() > MIN_VALIDITY:
        return Tokens(env.access_token, env.expiry, env.refresh_token)
    async with _envs_lock(directory):
        envs = load_envs(directory)  # another command may have refreshed it meanwhile
        env = envs.envs.get(name)
        if env is None or not env.logged_in:
            return None
        if env.access_token and env.expiry - clock() > MIN_VALIDITY:
            return Tokens(env.access_token, env.expiry, env.refresh_token)
        try:
            tokens = await auth.refresh(env.refresh_token)
        except MicroError as exc:
            if exc.code in _REFUSED:
                envs.envs[name] = env.forget()
                save_envs(envs, directory)
            raise
        envs.envs[name] = env = env.with_tokens(tokens)
        save_envs(envs, directory)
        return Tokens(env.access_token, env.expiry, env.refresh_token)


async def cli_credential(auth: RpcAuth, *, clock: Callable[[], float] = time.time) -> Tokens | None:
    """The tokens a CLI command calls with, by the order in the module docstring; None for
    an anonymous call. A saved session the auth service refuses to refresh ends the command
    with ``your session expired: micro login``."""
    from ..auth.session import read_local_credential
    from ..errors import MicroError
    from .common import fail

    environ = os.environ
    if environ.get("MICRO_API_KEY"):
        return await auth.exchange(environ["MICRO_API_KEY"])
    try:
        name, env = current_env()
    except ValueError as exc:
        fail(str(exc))
    if environ.get("MICRO_AUTH_ID") and environ.get("MICRO_AUTH_SECRET"):
        namespace = (
            environ.get("MICRO_AUTH_NAMESPACE") or environ.get("MICRO_NAMESPACE") or env.namespace
        )
        return await auth.login(environ["MICRO_AUTH_ID"], environ["MICRO_AUTH_SECRET"], namespace)
    try:
        tokens = await session_tokens(auth, name, clock=clock)
    except MicroError as exc:
        if exc.code in _REFUSED:
            fail(f"your session expired: micro login (env {name!r}: {exc.detail})")
        raise
    if tokens is not None:
        return tokens
    if name == LOCAL:
        local = read_local_credential(data_dir())
        if local is not None:
            return await auth.exchange(local.api_key)
    return None
