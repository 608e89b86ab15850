"""Auth enforced end to end on a real server (auth on, as `micro server` runs): at the gateway
and in every service's guard. Rows of the attack table in docs/security.md are marked
``attack:``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from micro import Context, Service, public
from micro.auth import Account
from micro.auth.rpc import RpcAuth
from micro.client import Client
from micro.errors import MicroError
from micro.registry.rpc import RpcRegistry
from micro.server import MicroServer
from micro.store.rpc import RpcStore
from micro.testing import admin_client, admin_header, start_server


class Req(msgspec.Struct):
    name: str = ""


class Resp(msgspec.Struct):
    message: str
    caller: str = ""


def greeter() -> Service:
    svc = Service("greeter")

    @svc.handler
    class Greeter:
        @public
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp(f"Hello {req.name}", ctx.account.sub if ctx.account else "")

        async def secret(self, ctx: Context, req: Req) -> Resp:
            assert ctx.account is not None
            return Resp("classified", ctx.account.sub)

    return svc


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MicroServer]:
    server = await start_server(tmp_path / "data")
    svc = greeter()
    # the service shares the server's registry and guard (the guard a service builds from
    # its credential verifies and decides the same way; tests/e2e run that path)
    svc.use(registry=server.registry, auth=server.guard)
    await svc.start()
    try:
        yield server
    finally:
        await svc.stop()
        await server.stop()


async def http(
    server: MicroServer, path: str, body: str = "{}", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    assert server.gateway is not None
    url = f"http://{server.gateway.address}{path}"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers or {}) as resp:
            text = await resp.text()
            try:
                return resp.status, msgspec.json.decode(text)
            except msgspec.DecodeError:  # aiohttp's own refusals (headers too large) are text
                return resp.status, {"detail": text}


async def user_header(
    server: MicroServer, id: str = "alice", scopes: list[str] | None = None
) -> str:
    assert server.auth is not None
    await server.auth.create_account(id, secret="correct horse battery", scopes=scopes or [])
    tokens = await server.auth.login(id, "correct horse battery")
    return f"Bearer {tokens.access_token}"


async def test_public_endpoint_needs_no_account(server: MicroServer) -> None:
    assert await http(server, "/greeter/call", '{"name": "Ann"}') == (
        200,
        {"message": "Hello Ann", "caller": ""},
    )


async def test_private_endpoint_needs_an_account_then_a_rule(server: MicroServer) -> None:
    status, body = await http(server, "/greeter/secret")
    assert status == 401 and "requires an account" in str(body["detail"])
    alice = await user_header(server)  # no scope: no rule grants her
    status, body = await http(server, "/greeter/secret", headers={"Authorization": alice})
    assert status == 403 and "no rule grants alice" in str(body["detail"])
    admin = await admin_header(server)
    assert await http(server, "/greeter/secret", headers={"Authorization": admin}) == (
        200,
        {"message": "classified", "caller": "admin"},
    )


async def test_rules_created_at_runtime_apply(server: MicroServer) -> None:
    from micro.auth import Resource, Rule

    assert server.auth is not None and server.guard is not None
    alice = await user_header(server, scopes=["greeters"])
    await server.auth.create_rule(Rule("greeters", "greeters", Resource("greeter", "Greeter.*")))
    await server.guard.reload()  # services reload every 10 s; do not wait for it
    status, body = await http(server, "/greeter/secret", headers={"Authorization": alice})
    assert (status, body["caller"]) == (200, "alice")
    await server.auth.create_rule(
        Rule("no-secret", "*", Resource("greeter", "Greeter.Secret"), "deny", priority=5)
    )
    await server.guard.reload()
    status, body = await http(server, "/greeter/secret", headers={"Authorization": alice})
    assert status == 403 and "denied by rule 'no-secret'" in str(body["detail"])


async def test_api_key_and_cookie_at_the_gateway(server: MicroServer) -> None:
    assert server.auth is not None
    _, key = await server.auth.create_key("admin", name="ci")
    status, body = await http(server, "/greeter/secret", headers={"Authorization": f"Bearer {key}"})
    assert (status, body["caller"]) == (200, "admin")
    token = (await admin_header(server)).removeprefix("Bearer ")
    status, body = await http(server, "/greeter/secret", headers={"Cookie": f"micro-token={token}"})
    assert (status, body["caller"]) == (200, "admin")
    # attack: a made-up API key
    status, body = await http(
        server, "/greeter/secret", headers={"Authorization": "Bearer mk_nokey_" + "A" * 43}
    )
    assert status == 401


async def test_bad_token_is_refused_even_on_a_public_endpoint(server: MicroServer) -> None:
    # attack: malformed and oversized tokens at the edge
    for token in ("garbage", "a.b.c", "x" * 8100):
        status, body = await http(
            server, "/greeter/call", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 401, (token[:10], body)
    # a header beyond the HTTP server's limit never reaches auth at all
    status, _ = await http(
        server, "/greeter/call", headers={"Authorization": "Bearer " + "x" * 20_000}
    )
    assert status in (400, 431)


@pytest.mark.parametrize(
    "path",
    [
        "//store//store/list",  # doubled slashes
        "/store/Store/List",
        "/greeter/../store/store/list",  # dot segments
        "/greeter/%2E%2E/store/store/list",
        "/store%2Fstore/list",  # encoded slash
        "/STORE/store/list",  # case
        "/Greeter/Secret",
        "/greeter/SECRET",
        "/greeter/secret/",
        "/v1/greeter/secret",
    ],
)
async def test_path_tricks_do_not_reach_a_protected_endpoint(
    server: MicroServer, path: str
) -> None:
    # attack: path tricks at the gateway; anonymous callers never get a 2xx from these
    status, body = await http(server, path, '{"database": "micro", "table": "auth"}')
    assert status in (400, 401, 404), (path, status, body)


async def test_core_services_are_never_public(server: MicroServer) -> None:
    client = Client(RpcRegistry(server.address))
    try:
        store = RpcStore(server.address, client=client)
        with pytest.raises(MicroError) as caught:
            await store.list_keys("micro", "auth")
        assert caught.value.status == 401
        auth = RpcAuth(server.address, client=client)
        with pytest.raises(MicroError) as caught:
            await auth.list_accounts()
        assert caught.value.status == 401
        # registry reads are public; writes are not
        assert any(s.name == "greeter" for s in await client.view.registry.list_services())  # type: ignore[union-attr]
    finally:
        await client.close()
    async with admin_client(server) as admin:
        assert await RpcStore(server.address, client=admin).list_keys("micro", "auth")


async def test_brute_force_login_is_locked_out(server: MicroServer) -> None:
    # attack: brute-force login over RPC, then the right password is refused too
    assert server.auth is not None
    await server.auth.create_account("bob", secret="the right password")
    client = Client()
    auth = RpcAuth(server.address, client=client)
    try:
        for _ in range(5):
            with pytest.raises(MicroError) as caught:
                await auth.login("bob", "guess", "micro")
            assert caught.value.status == 401
        with pytest.raises(MicroError) as caught:
            await auth.login("bob", "the right password", "micro")
        assert caught.value.status == 429 and "locked" in caught.value.detail
    finally:
        await client.close()


async def test_token_of_another_namespace_is_refused_by_a_namespaced_service(
    server: MicroServer,
) -> None:
    # attack: a token for another namespace
    assert server.auth is not None
    await server.auth.create_account("eve", secret="eve's own password", namespace="acme")
    tokens = await server.auth.issue(Account("eve", scopes=["admin"], namespace="acme"))
    from micro.auth.verify import Verifier

    verifier = Verifier(await server.auth.jwks())
    with pytest.raises(MicroError) as caught:
        verifier.verify(tokens.access_token, namespace="micro")
    assert "namespace" in caught.value.detail
    # and at the gateway she reaches only acme's services: there is no acme/greeter
    status, _ = await http(
        server, "/greeter/secret", headers={"Authorization": f"Bearer {tokens.access_token}"}
    )
    assert status in (403, 404, 503)


async def test_a_namespace_caller_reaches_its_own_service_through_the_gateway(
    server: MicroServer,
) -> None:
    from micro.settings import Settings

    assert server.auth is not None
    await server.auth.create_account(
        "boss", secret="acme's own password", scopes=["admin"], namespace="acme"
    )
    tokens = await server.auth.login("boss", "acme's own password", "acme")
    header = f"Bearer {tokens.access_token}"
    svc = Service("greeter", settings=Settings(namespace="acme"))

    @svc.handler
    class Greeter:
        @public
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp(f"acme says hello {req.name}", ctx.service)

    # registered as acme's: the registry stores it as acme/greeter beside micro's greeter
    svc.use(registry=RpcRegistry(server.address, credentials=lambda: header), auth=False)
    await svc.start()
    try:
        status, body = await http(
            server, "/greeter/call", '{"name": "B"}', headers={"Authorization": header}
        )
        assert (status, body["message"]) == (200, "acme says hello B")
        # anonymous callers (namespace micro) still reach micro's greeter
        assert await http(server, "/greeter/call", '{"name": "C"}') == (
            200,
            {"message": "Hello C", "caller": ""},
        )
    finally:
        await svc.stop()


async def test_a_stale_local_credential_is_replaced_on_start(tmp_path: Path) -> None:
    from micro.auth.session import read_local_credential, write_local_credential

    data = tmp_path / "data"
    first = await start_server(data, gateway=False)
    await first.stop()
    kept = read_local_credential(data)
    assert kept is not None
    write_local_credential(data, "mk_gone_" + "A" * 43, first.address)  # not a real key
    second = await start_server(data, gateway=False)
    try:
        fresh = read_local_credential(data)
        assert fresh is not None and fresh.api_key not in ("mk_gone_" + "A" * 43, kept.api_key)
        assert second.auth is not None
        assert (await second.auth.exchange(fresh.api_key)).access_token
        assert (data / "credentials").stat().st_mode & 0o777 == 0o600
    finally:
        await second.stop()
    # a valid one is kept as it is
    third = await start_server(data, gateway=False)
    try:
        assert read_local_credential(data) == fresh
    finally:
        await third.stop()
