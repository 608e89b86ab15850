"""``micro login/logout/user/env/auth`` run for real: a ``micro server`` process and the
``micro`` CLI as subprocesses.

Two kinds of CLI: ``server.micro(...)`` shares the server's data dir, so it calls with the
local admin credential the server writes there; :class:`Cli` has a data dir of its own (a
different machine, as far as the CLI can tell) and must log in through an env.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MICRO, REPO, ServerProcess

ANNOUNCE = "created the account 'admin' with the password"


@dataclass
class Cli:
    """The CLI on "another machine": its own data dir, no MICRO_SERVER."""

    data_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_")}
        env.update(MICRO_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1", **extra)
        return env

    def __call__(
        self, *args: str, input: str | None = None, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        # a new session has no controlling terminal: a hidden prompt reads from stdin
        return subprocess.run(
            [*MICRO, *args],
            env=self.env(**extra),
            cwd=REPO,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,
        )

    def ok(self, *args: str, **extra: str) -> str:
        result = self(*args, **extra)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str, **extra: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json", **extra))

    @property
    def envs_file(self) -> Path:
        return self.data_dir / "envs.json"

    def envs(self) -> dict[str, Any]:
        return dict(json.loads(self.envs_file.read_text()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("server")
    srv = ServerProcess(data)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def admin_password(server: ServerProcess) -> str:
    """The password the server printed, once, when it created ``admin``."""
    lines = server.log().splitlines()
    (at,) = [i for i, line in enumerate(lines) if ANNOUNCE in line]
    return next(line.strip() for line in lines[at + 1 :] if line.strip())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "cli")


@pytest.fixture
def remote(cli: Cli, server: ServerProcess) -> Cli:
    """A CLI whose current env points at the server, not logged in."""
    cli.ok("env", "add", "remote", "--server", f"127.0.0.1:{server.rpc_port}")
    cli.ok("env", "use", "remote")
    return cli


def login(cli: Cli, account: str, secret: str, *more: str) -> str:
    return cli.ok("login", "--id", account, "--secret", secret, *more)


def test_local_credential_works_without_login(server: ServerProcess) -> None:
    accounts = server.micro_json("auth", "list", "accounts")
    admin = next(a for a in accounts if a["id"] == "admin")
    assert admin["scopes"] == ["admin"] and admin["namespace"] == "micro"
    who = server.micro("user")
    assert who.returncode == 0, who.stderr
    assert "id: admin" in who.stdout and "scopes: admin" in who.stdout
    # the local credential is an admin API key, listed (by id, never the key itself)
    keys = server.micro_json("auth", "list", "keys")
    assert any(k["account"] == "admin" for k in keys)
    credential = server.data_dir / "credentials"
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    assert any(f'"mk_{k["id"]}_' in credential.read_text() for k in keys)


def test_login_user_logout(remote: Cli, admin_password: str) -> None:
    assert remote.ok("user").strip() == "anonymous"
    refused = remote("auth", "list", "accounts")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: unauthorized") and "micro login" in refused.stderr

    # the secret is prompted for, hidden, when not given
    result = remote("login", "--id", "admin", input=admin_password + "\n")
    assert result.returncode == 0, result.stderr
    assert "logged in as admin (namespace micro)" in result.stdout

    saved = remote.envs()
    assert saved["current"] == "remote"
    session = saved["envs"]["remote"]
    assert session["account"] == "admin" and session["refresh_token"] and session["access_token"]
    assert session["expiry"] > time.time() + 60
    assert stat.S_IMODE(remote.envs_file.stat().st_mode) == 0o600
    assert admin_password not in remote.envs_file.read_text()
    assert not (remote.data_dir / "credentials").exists()  # no local credential was used

    who = remote.json("user")
    assert (who["id"], who["type"], who["namespace"], who["scopes"]) == (
        "admin",
        "user",
        "micro",
        ["admin"],
    )
    assert any(a["id"] == "admin" for a in remote.json("auth", "list", "accounts"))

    out = remote.ok("logout")
    assert "logged out admin" in out
    forgotten = remote.envs()["envs"]["remote"]
    assert not forgotten.get("refresh_token") and not forgotten.get("access_token")
    assert remote.ok("user").strip() == "anonymous"
    after = remote("auth", "list", "accounts")
    assert after.returncode == 1
    assert after.stderr.splitlines() == [
        "error: unauthorized: not logged in (env remote): micro login"
    ]
    assert remote.ok("logout").strip() == "not logged in (env remote)"

    # the session ended on the server too: the old refresh token is refused
    envs = remote.envs()
    envs["envs"]["remote"] = {**session, "expiry": 0.0}
    remote.envs_file.write_text(json.dumps(envs))
    expired = remote("user")
    assert expired.returncode == 1
    assert expired.stderr.startswith("error: your session expired: micro login")


def test_wrong_secret_is_refused_and_nothing_saved(remote: Cli) -> None:
    result = remote("login", "--id", "admin", "--secret", "not-the-password")
    assert result.returncode == 1
    assert "unauthorized" in result.stderr
    assert not remote.envs()["envs"]["remote"].get("refresh_token")


def test_stale_access_token_is_refreshed_and_saved(remote: Cli, admin_password: str) -> None:
    login(remote, "admin", admin_password)
    before = remote.envs()
    stale = before["envs"]["remote"]
    before["envs"]["remote"] = {**stale, "expiry": time.time() + 10}  # < 30 s left
    remote.envs_file.write_text(json.dumps(before))

    assert remote.json("user")["id"] == "admin"
    fresh = remote.envs()["envs"]["remote"]
    assert fresh["refresh_token"] != stale["refresh_token"]
    assert fresh["access_token"] != stale["access_token"]
    assert fresh["expiry"] > time.time() + 60
    assert stat.S_IMODE(remote.envs_file.stat().st_mode) == 0o600

    # a valid access token is used as saved: no refresh, the file is unchanged
    text = remote.envs_file.read_text()
    assert remote.json("user")["id"] == "admin"
    assert remote.envs_file.read_text() == text

    # presenting the retired refresh token again ends the session
    replay = remote.envs()
    replay["envs"]["remote"] = {**stale, "expiry": 0.0}
    remote.envs_file.write_text(json.dumps(replay))
    result = remote("user")
    assert result.returncode == 1 and "your session expired: micro login" in result.stderr
    assert not remote.envs()["envs"]["remote"].get("refresh_token")


def test_env_add_use_remove(cli: Cli) -> None:
    assert cli.json("env") == [
        {
            "name": "local",
            "current": True,
            "server": "127.0.0.1:8081",
            "namespace": "micro",
            "account": None,
        }
    ]
    assert not cli.envs_file.exists()  # listing writes nothing

    assert "added env staging" in cli.ok(
        "env", "add", "staging", "--server", "10.1.2.3:9000", "--namespace", "acme"
    )
    assert stat.S_IMODE(cli.envs_file.stat().st_mode) == 0o600
    again = cli("env", "add", "staging", "--server", "10.1.2.3:9000")
    assert again.returncode == 1 and "exists" in again.stderr
    bad = cli("env", "add", "x", "--server", "nowhere")
    assert bad.returncode == 1 and "not host:port" in bad.stderr
    bad_name = cli("env", "add", "../up", "--server", "h:1")
    assert bad_name.returncode == 1 and "env name" in bad_name.stderr

    cli.ok("env", "use", "staging")
    listed = {e["name"]: e for e in cli.json("env")}
    assert listed["staging"]["current"] and not listed["local"]["current"]
    assert listed["staging"]["namespace"] == "acme"
    table = cli.ok("env")
    assert any(line.split()[:2] == ["*", "staging"] for line in table.splitlines())
    # MICRO_ENV picks an env for one command
    assert {e["name"] for e in cli.json("env", MICRO_ENV="local") if e["current"]} == {"local"}
    missing = cli("user", MICRO_ENV="nope")
    assert missing.returncode == 1 and "'nope'" in missing.stderr

    ghost = cli("env", "use", "ghost")
    assert ghost.returncode == 1 and "no env named 'ghost'" in ghost.stderr

    removed = cli("env", "remove", "local")
    assert removed.returncode == 1 and "cannot be removed" in removed.stderr
    assert "removed env staging" in cli.ok("env", "remove", "staging")
    assert [e["name"] for e in cli.json("env") if e["current"]] == ["local"]
    assert cli("env", "remove", "staging").returncode == 1


def test_accounts_rules_and_keys(server: ServerProcess, remote: Cli) -> None:
    # accounts
    created = server.micro(
        "auth",
        "create",
        "account",
        "alice",
        "--scope",
        "dev",
        "--scope",
        "ops",
        "--meta",
        "team=blue",
    )
    assert created.returncode == 0, created.stderr
    assert "created user account alice in namespace micro" in created.stdout
    (secret,) = [
        ln.split(": ", 1)[1] for ln in created.stdout.splitlines() if ln.startswith("secret: ")
    ]
    alice = next(a for a in server.micro_json("auth", "list", "accounts") if a["id"] == "alice")
    assert alice["scopes"] == ["dev", "ops"] and alice["metadata"] == {"team": "blue"}
    dup = server.micro("auth", "create", "account", "alice")
    assert dup.returncode == 1 and "conflict" in dup.stderr

    given = server.micro(
        "auth", "create", "account", "svc-a", "--type", "service", "--secret", "s3cret-given-1"
    )
    assert given.returncode == 0 and "secret:" not in given.stdout  # not echoed back

    # alice logs in elsewhere; she is not an administrator
    assert "logged in as alice (namespace micro)" in login(remote, "alice", secret)
    who = remote.json("user")
    assert who["id"] == "alice" and who["scopes"] == ["dev", "ops"]
    denied = remote("auth", "list", "accounts")
    assert denied.returncode == 1 and "forbidden" in denied.stderr

    # rules
    out = server.micro(
        "auth",
        "create",
        "rule",
        "no-greeter",
        "--scope",
        "dev",
        "--resource",
        "greeter:Greeter.*",
        "--access",
        "deny",
        "--priority",
        "5",
    )
    assert out.returncode == 0, out.stderr
    rules = {r["id"]: r for r in server.micro_json("auth", "list", "rules")}
    assert rules["no-greeter"] == {
        "id": "no-greeter",
        "scope": "dev",
        "resource": {"service": "greeter", "endpoint": "Greeter.*"},
        "access": "deny",
        "priority": 5,
    }
    whole = server.micro(
        "auth", "create", "rule", "all-store", "--scope", "ops", "--resource", "store"
    )
    assert whole.returncode == 0, whole.stderr
    rules = {r["id"]: r for r in server.micro_json("auth", "list", "rules")}
    assert rules["all-store"]["resource"] == {"service": "store", "endpoint": "*"}
    assert (
        server.micro(
            "auth", "create", "rule", "no-greeter", "--scope", "x", "--resource", "y"
        ).returncode
        == 1
    )
    bad = server.micro(
        "auth", "create", "rule", "r", "--scope", "x", "--resource", "a", "--access", "maybe"
    )
    assert bad.returncode != 0
    for rule in ("no-greeter", "all-store"):
        assert server.micro("auth", "delete", "rule", rule).returncode == 0
    remaining = {r["id"] for r in server.micro_json("auth", "list", "rules")}
    assert not {"no-greeter", "all-store"} & remaining

    # API keys: alice makes her own; the admin makes one for her
    made = remote("auth", "create", "key", "--name", "ci", "--ttl", "30d")
    assert made.returncode == 0, made.stderr
    (key,) = [ln.split(": ", 1)[1] for ln in made.stdout.splitlines() if ln.startswith("key: ")]
    assert key.startswith("mk_")
    mine = remote.json("auth", "list", "keys")
    assert [(k["account"], k["name"]) for k in mine] == [("alice", "ci")]
    assert 29 * 86400 < mine[0]["expires"] - time.time() <= 30 * 86400
    assert key not in json.dumps(server.micro_json("auth", "list", "keys"))
    assert (
        server.micro("auth", "create", "key", "--account", "alice", "--name", "ops").returncode == 0
    )
    assert {k["name"] for k in server.micro_json("auth", "list", "keys", "--account", "alice")} == {
        "ci",
        "ops",
    }

    # MICRO_API_KEY comes first, even over a login
    assert remote.json("user", MICRO_API_KEY=key)["id"] == "alice"
    assert server.micro("auth", "delete", "key", mine[0]["id"]).returncode == 0
    gone = remote("user", MICRO_API_KEY=key)
    assert gone.returncode == 1 and "unauthorized" in gone.stderr

    # MICRO_AUTH_ID + MICRO_AUTH_SECRET log in without touching the envs file
    text = remote.envs_file.read_text()
    as_svc = remote.json("user", MICRO_AUTH_ID="svc-a", MICRO_AUTH_SECRET="s3cret-given-1")
    assert (as_svc["id"], as_svc["type"]) == ("svc-a", "service")
    assert remote.envs_file.read_text() == text

    # deleting alice ends her session and her keys
    for account in ("alice", "svc-a"):
        assert server.micro("auth", "delete", "account", account).returncode == 0
    envs = remote.envs()
    envs["envs"]["remote"]["expiry"] = 0.0  # make the CLI refresh now
    remote.envs_file.write_text(json.dumps(envs))
    ended = remote("user")
    assert ended.returncode == 1 and "your session expired: micro login" in ended.stderr
    ids = {a["id"] for a in server.micro_json("auth", "list", "accounts")}
    assert not {"alice", "svc-a"} & ids
    assert not server.micro_json("auth", "list", "keys", "--account", "alice")
    missing = server.micro("auth", "delete", "account", "alice")
    assert missing.returncode == 1 and "not_found" in missing.stderr


def test_rotate_keys_keeps_sessions(
    server: ServerProcess, remote: Cli, admin_password: str
) -> None:
    login(remote, "admin", admin_password)
    out = remote.ok("auth", "rotate-keys")
    assert out.startswith("signing with key ")
    # the token signed with the old key still works; the local credential gets a new one
    assert remote.json("user")["id"] == "admin"
    assert server.micro_json("user")["id"] == "admin"
