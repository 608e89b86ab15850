"""Sessions: log in, refresh at two thirds of the lifetime, fall back to logging in again,
keep trying when the auth service is not there; and which credential a service uses."""

from __future__ import annotations

from pathlib import Path

from micro.auth import Tokens
from micro.auth.session import (
    Credential,
    Session,
    credential_from_env,
    read_local_credential,
    write_local_credential,
)
from micro.errors import MicroError, unauthorized, unavailable
from micro.testing import eventually


class Auth:
    """Stands in for the auth service's two calls; counts them and can be told to fail."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.logins = 0
        self.refreshes: list[str] = []
        self.fail_logins = 0
        self.fail_refresh = False

    async def login(self, credential: Credential) -> Tokens:
        if self.fail_logins:
            self.fail_logins -= 1
            raise unavailable("auth", "not there yet")
        self.logins += 1
        return Tokens(f"access-{self.logins}", self.clock[0] + 900, f"refresh-{self.logins}")

    async def refresh(self, token: str) -> Tokens:
        if self.fail_refresh:
            raise unauthorized("auth", "refresh token reused")
        self.refreshes.append(token)
        n = len(self.refreshes)
        return Tokens(f"refreshed-{n}", self.clock[0] + 900, f"r-{n}")


async def test_start_logs_in_and_renew_rotates_with_the_refresh_token() -> None:
    clock = [1000.0]
    auth = Auth(clock)
    session = Session(Credential("svc", "secret"), auth.login, auth.refresh, clock=lambda: clock[0])
    try:
        await session.start()
        assert session.header() == "Bearer access-1" and auth.logins == 1
        assert session._due_in() == 600.0  # two thirds of 900 s
        clock[0] += 500
        assert session._due_in() == 100.0
        await session.renew()
        assert auth.refreshes == ["refresh-1"] and session.header() == "Bearer refreshed-1"
        await session.renew()  # the rotated refresh token is the one used next
        assert auth.refreshes == ["refresh-1", "r-1"]
    finally:
        await session.close()


async def test_a_refused_refresh_falls_back_to_logging_in() -> None:
    clock = [0.0]
    auth = Auth(clock)
    session = Session(Credential("svc", "secret"), auth.login, auth.refresh, clock=lambda: clock[0])
    try:
        await session.start()
        auth.fail_refresh = True
        await session.renew()
        assert auth.logins == 2 and session.header() == "Bearer access-2"
    finally:
        await session.close()


async def test_keep_trying_logs_in_once_the_auth_service_answers() -> None:
    clock = [0.0]
    auth = Auth(clock)
    auth.fail_logins = 3
    session = Session(
        Credential("svc", "secret"), auth.login, auth.refresh, clock=lambda: clock[0], retry=0.01
    )
    try:
        try:
            await session.start()
        except MicroError as exc:
            assert exc.code == "unavailable"
        assert session.header() is None
        session.keep_trying()
        await eventually(lambda: session.header() == "Bearer access-1", timeout=5)
        assert auth.fail_logins == 0
    finally:
        await session.close()


def test_the_credential_a_service_uses(tmp_path: Path) -> None:
    assert credential_from_env(tmp_path, {}) is None
    write_local_credential(tmp_path, "mk_local", "127.0.0.1:8081")
    assert (tmp_path / "credentials").stat().st_mode & 0o777 == 0o600
    assert read_local_credential(tmp_path) == Credential(api_key="mk_local")
    assert credential_from_env(tmp_path, {}) == Credential(api_key="mk_local")
    env = {"MICRO_API_KEY": "mk_env", "MICRO_NAMESPACE": "acme"}
    assert credential_from_env(tmp_path, env) == Credential(api_key="mk_env", namespace="acme")
    env |= {"MICRO_AUTH_ID": "svc", "MICRO_AUTH_SECRET": "s", "MICRO_AUTH_NAMESPACE": "ns"}
    assert credential_from_env(tmp_path, env) == Credential("svc", "s", namespace="ns")
    assert "s3cr3t" not in repr(Credential("svc", "s3cr3t"))  # never shows the secret
    (tmp_path / "credentials").write_bytes(b"not json")
    assert read_local_credential(tmp_path) is None
