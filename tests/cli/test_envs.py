"""micro.cli.envs in-process: the envs file, which server the CLI talks to, and the
credential it calls with (against a real in-process ``micro server``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import typer

from micro.auth import Tokens
from micro.auth.rpc import RpcAuth
from micro.cli.envs import (
    LOCAL,
    Env,
    Envs,
    cli_credential,
    current_env,
    edit_envs,
    load_envs,
    save_envs,
    server_for_cli,
    session_tokens,
)
from micro.errors import MicroError
from micro.server import MicroServer
from micro.testing import start_server

CLEAR = (
    "MICRO_SERVER",
    "MICRO_ENV",
    "MICRO_API_KEY",
    "MICRO_AUTH_ID",
    "MICRO_AUTH_SECRET",
    "MICRO_AUTH_NAMESPACE",
    "MICRO_NAMESPACE",
)


@pytest.fixture
def cli_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in CLEAR:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "cli"
    monkeypatch.setenv("MICRO_DATA_DIR", str(path))
    return path


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MicroServer]:
    data = tmp_path / "server"
    data.mkdir()
    srv = await start_server(data, gateway=False)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def auth(server: MicroServer) -> AsyncIterator[RpcAuth]:
    client = RpcAuth(server.rpc.address)
    try:
        yield client
    finally:
        await client.close()


def test_missing_file_means_only_local(cli_dir: Path) -> None:
    envs = load_envs()
    assert envs.current == LOCAL and list(envs.envs) == [LOCAL]
    assert current_env() == (LOCAL, Env("127.0.0.1:8081"))
    assert server_for_cli() == "127.0.0.1:8081"
    assert not cli_dir.exists()


def test_save_is_private_and_round_trips(cli_dir: Path) -> None:
    envs = Envs("prod", {LOCAL: Env("127.0.0.1:8081"), "prod": Env("10.0.0.5:8081", "acme")})
    save_envs(envs)
    path = cli_dir / "envs.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_envs() == envs
    assert json.loads(path.read_text()) == {
        "current": "prod",
        "envs": {
            "local": {"server": "127.0.0.1:8081"},
            "prod": {"server": "10.0.0.5:8081", "namespace": "acme"},
        },
    }
    assert sorted(p.name for p in cli_dir.iterdir()) == ["envs.json"]  # no temporary left
    with edit_envs() as edited:
        del edited.envs["prod"]
        edited.current = LOCAL
    assert load_envs() == Envs()


def test_an_error_inside_edit_saves_nothing(cli_dir: Path) -> None:
    save_envs(Envs())
    before = (cli_dir / "envs.json").read_bytes()
    with pytest.raises(RuntimeError), edit_envs() as envs:
        envs.current = "elsewhere"
        raise RuntimeError("changed my mind")
    assert (cli_dir / "envs.json").read_bytes() == before


def test_a_broken_file_is_named(cli_dir: Path) -> None:
    cli_dir.mkdir()
    (cli_dir / "envs.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"envs\.json is not valid"):
        load_envs()


def test_which_server(cli_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_envs(Envs("a", {LOCAL: Env("127.0.0.1:8081"), "a": Env("10.0.0.1:1"), "b": Env("h:2")}))
    assert server_for_cli() == "10.0.0.1:1"
    monkeypatch.setenv("MICRO_ENV", "b")
    assert current_env() == ("b", Env("h:2"))
    assert server_for_cli() == "h:2"
    monkeypatch.setenv("MICRO_SERVER", "127.0.0.1:9999")
    assert server_for_cli() == "127.0.0.1:9999"
    monkeypatch.setenv("MICRO_SERVER", "nowhere")
    with pytest.raises(ValueError, match="MICRO_SERVER 'nowhere' is not host:port"):
        server_for_cli()
    monkeypatch.delenv("MICRO_SERVER")
    monkeypatch.setenv("MICRO_ENV", "gone")
    with pytest.raises(ValueError, match="'gone', which does not exist"):
        server_for_cli()


def _copy_credential(server_dir: Path, cli_dir: Path) -> None:
    cli_dir.mkdir()
    shutil.copy(server_dir / "credentials", cli_dir / "credentials")


async def _whose(auth: RpcAuth, tokens: Tokens | None) -> str:
    assert tokens is not None
    return (await auth.with_token(tokens.access_token).inspect(tokens.access_token)).sub


async def test_local_env_uses_the_server_credential(
    server: MicroServer, auth: RpcAuth, cli_dir: Path
) -> None:
    assert await cli_credential(auth) is None  # no credential here: anonymous
    _copy_credential(server.options.data_dir, cli_dir)
    tokens = await cli_credential(auth)
    assert tokens is not None and not tokens.refresh_token
    claims = await auth.with_token(tokens.access_token).inspect(tokens.access_token)
    assert (claims.sub, claims.scopes) == ("admin", ["admin"])
    # only in the env "local"
    save_envs(Envs("other", {LOCAL: Env("127.0.0.1:8081"), "other": Env(server.rpc.address)}))
    assert await cli_credential(auth) is None


async def test_environment_credentials_come_first(
    server: MicroServer, auth: RpcAuth, monkeypatch: pytest.MonkeyPatch, cli_dir: Path
) -> None:
    assert server.admin_password is not None
    admin = auth.with_token((await auth.login("admin", server.admin_password)).access_token)
    await admin.create_account("bob", secret="bob-secret-123", scopes=["dev"])
    _, key = await admin.create_key("bob", name="ci")

    monkeypatch.setenv("MICRO_AUTH_ID", "bob")
    monkeypatch.setenv("MICRO_AUTH_SECRET", "bob-secret-123")
    tokens = await cli_credential(auth)
    assert tokens is not None and tokens.refresh_token
    assert await _whose(auth, tokens) == "bob"

    monkeypatch.setenv("MICRO_AUTH_SECRET", "wrong")
    monkeypatch.setenv("MICRO_API_KEY", key)  # the API key wins over the id and secret
    tokens = await cli_credential(auth)
    assert await _whose(auth, tokens) == "bob"
    assert not (cli_dir / "envs.json").exists()


async def _logged_in(server: MicroServer, auth: RpcAuth, expiry: float) -> Env:
    """Env ``remote`` (current) holding an admin session whose access token ends at
    ``expiry``."""
    assert server.admin_password is not None
    tokens = await auth.login("admin", server.admin_password)
    env = Env(server.rpc.address, account="admin").with_tokens(tokens)
    env = Env(env.server, env.namespace, env.account, env.refresh_token, env.access_token, expiry)
    save_envs(Envs("remote", {LOCAL: Env("127.0.0.1:8081"), "remote": env}))
    return env


async def test_a_valid_saved_token_is_used_as_is(
    server: MicroServer, auth: RpcAuth, cli_dir: Path
) -> None:
    saved = await _logged_in(server, auth, time.time() + 600)
    before = (cli_dir / "envs.json").read_bytes()
    tokens = await cli_credential(auth)
    assert tokens is not None and tokens.access_token == saved.access_token
    assert (cli_dir / "envs.json").read_bytes() == before


async def test_a_stale_token_is_refreshed_once_by_concurrent_commands(
    server: MicroServer, auth: RpcAuth, cli_dir: Path
) -> None:
    saved = await _logged_in(server, auth, time.time() + 10)  # under 30 s left
    results = await asyncio.gather(*(session_tokens(auth, "remote") for _ in range(5)))
    assert all(r is not None for r in results)
    assert len({r.refresh_token for r in results if r is not None}) == 1  # one refresh
    now = load_envs().envs["remote"]
    assert now.refresh_token != saved.refresh_token and now.expiry > time.time() + 60
    assert stat.S_IMODE((cli_dir / "envs.json").stat().st_mode) == 0o600
    # the family is intact (no refresh token was presented twice)
    assert (await auth.refresh(now.refresh_token)).refresh_token


async def test_a_refused_refresh_ends_the_command_and_forgets_the_session(
    server: MicroServer, auth: RpcAuth, cli_dir: Path
) -> None:
    saved = await _logged_in(server, auth, time.time() + 600)
    await auth.with_token(saved.access_token).revoke(saved.refresh_token)
    # a clock 10 minutes ahead: the saved access token is stale, the refresh is refused
    with pytest.raises(typer.Exit):
        await cli_credential(auth, clock=lambda: time.time() + 600)
    forgotten = load_envs().envs["remote"]
    assert forgotten == Env(server.rpc.address, account="").forget()
    assert await cli_credential(auth) is None  # anonymous from now on


async def test_an_unreachable_server_keeps_the_session(
    server: MicroServer, auth: RpcAuth, cli_dir: Path
) -> None:
    await _logged_in(server, auth, time.time() + 10)
    before = load_envs()
    nowhere = RpcAuth("127.0.0.1:1", timeout=2.0)
    try:
        with pytest.raises(MicroError) as err:
            await session_tokens(nowhere, "remote")
        assert err.value.code == "unavailable"
    finally:
        await nowhere.close()
    assert load_envs() == before
