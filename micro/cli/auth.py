"""``micro login``, ``logout``, ``user``, ``env`` and ``auth``: who the CLI is, and managing
accounts, rules and API keys of the server's ``auth`` service.

``login`` saves a session (access + refresh token, never the password) in the current env
(:mod:`micro.cli.envs`); ``logout`` ends it on the server and forgets it. ``user`` shows the
account the CLI calls as. ``env`` lists, adds, switches and removes envs.

``auth create|list|delete account|rule|key`` and ``auth rotate-keys`` manage the auth
service; they need an administrator (the local admin credential on the server's machine, or
a login with the ``admin`` scope). ``--namespace`` defaults to the caller's own. Secrets and
API keys are printed once, when created: only their hashes are kept.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from .common import (
    Output,
    fail,
    parse_pairs,
    parse_seconds,
    print_json,
    print_table,
    run,
    server_address,
)
from .envs import (
    LOCAL,
    Env,
    check_env_name,
    check_server,
    current_env,
    edit_envs,
    load_envs,
)

if TYPE_CHECKING:
    from ..auth.rpc import RpcAuth

__all__ = ["auth_app", "env_app", "login", "logout", "register", "user"]

T = TypeVar("T")

auth_app = typer.Typer(
    name="auth", help="Accounts, rules and API keys of the auth service.", no_args_is_help=True
)
create_app = typer.Typer(
    name="create", help="Create an account, rule or API key.", no_args_is_help=True
)
list_app = typer.Typer(name="list", help="List accounts, rules or API keys.", no_args_is_help=True)
delete_app = typer.Typer(
    name="delete", help="Delete an account, rule or API key.", no_args_is_help=True
)
auth_app.add_typer(create_app, name="create")
auth_app.add_typer(list_app, name="list")
auth_app.add_typer(delete_app, name="delete")

env_app = typer.Typer(
    name="env",
    help="Named contexts: which server, namespace and login the CLI uses.",
    invoke_without_command=True,
)

Namespace = Annotated[
    str, typer.Option("--namespace", "-n", help="namespace (default: your own)", show_default=False)
]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).isoformat(" ", "seconds") if ts else ""


def _env_in_use() -> tuple[str, Env]:
    try:
        return current_env()
    except ValueError as exc:
        fail(str(exc))


# -- who am I ------------------------------------------------------------------------------


def _anonymous_call(work: Callable[[RpcAuth], Awaitable[T]]) -> T:
    """Run ``work`` against the auth service without any credential."""

    async def go() -> T:
        from ..auth.rpc import RpcAuth

        auth = RpcAuth(server_address())
        try:
            return await work(auth)
        finally:
            await auth.close()

    return run(go())


def login(
    id: Annotated[str | None, typer.Option("--id", help="account id (prompted if missing)")] = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="its secret (prompted, hidden, if missing)")
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="the account's namespace (default: the env's)"),
    ] = None,
) -> None:
    """Log in; the session is saved in the current env (never the secret)."""
    name, env = _env_in_use()
    account = id or typer.prompt("account id")
    password = secret or typer.prompt("secret", hide_input=True)
    ns = namespace or env.namespace
    tokens = _anonymous_call(lambda auth: auth.login(account, password, ns))
    with edit_envs() as envs:
        saved = envs.envs.get(name, env)
        envs.envs[name] = Env(saved.server, ns, account).with_tokens(tokens)
    typer.echo(f"logged in as {account} (namespace {ns})")


def logout() -> None:
    """End the current env's session on the server and forget it."""
    name, env = _env_in_use()
    if not env.logged_in:
        typer.echo(f"not logged in (env {name})")
        return

    async def go() -> None:
        from ..auth.rpc import RpcAuth
        from ..errors import MicroError
        from .envs import session_tokens

        auth = RpcAuth(server_address())
        try:
            tokens = await session_tokens(auth, name)  # Revoke needs a valid access token
            if tokens is not None:
                await auth.with_token(tokens.access_token).revoke(tokens.refresh_token)
        except MicroError as exc:
            if exc.code not in ("unauthorized", "forbidden", "not_found"):
                raise  # e.g. the server is unreachable: keep the session, say so
            # the session had already ended on the server
        finally:
            await auth.close()

    run(go())
    with edit_envs() as envs:
        if name in envs.envs:
            envs.envs[name] = envs.envs[name].forget()
    typer.echo(f"logged out {env.account} (env {name})")


def user(output: Output = "table") -> None:
    """Who the CLI calls as: id, type, namespace, scopes (or anonymous)."""

    async def go() -> dict[str, Any] | None:
        from ..auth.rpc import RpcAuth
        from .envs import cli_credential

        auth = RpcAuth(server_address())
        try:
            tokens = await cli_credential(auth)
            if tokens is None:
                return None
            claims = await auth.with_token(tokens.access_token).inspect(tokens.access_token)
        finally:
            await auth.close()
        return {
            "id": claims.sub,
            "type": claims.type,
            "namespace": claims.namespace,
            "scopes": list(claims.scopes),
            "expires": claims.exp,
        }

    who = run(go())
    if output == "json":
        print_json(who or {"id": None, "anonymous": True})
    elif who is None:
        typer.echo("anonymous")
    else:
        typer.echo(f"id: {who['id']}")
        typer.echo(f"type: {who['type']}")
        typer.echo(f"namespace: {who['namespace']}")
        typer.echo(f"scopes: {', '.join(who['scopes']) or '-'}")
        typer.echo(f"token expires: {_when(who['expires'])}")


# -- envs ----------------------------------------------------------------------------------


@env_app.callback()
def env_list(ctx: typer.Context, output: Output = "table") -> None:
    """List the envs (* marks the one in use); the subcommands change them."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        envs = load_envs()
    except ValueError as exc:
        fail(str(exc))
    in_use = os.environ.get("MICRO_ENV") or envs.current
    if output == "json":
        print_json(
            [
                {
                    "name": name,
                    "current": name == in_use,
                    "server": env.server,
                    "namespace": env.namespace,
                    "account": env.account or None,
                }
                for name, env in sorted(envs.envs.items())
            ]
        )
        return
    rows = [
        ("*" if name == in_use else "", name, env.server, env.namespace, env.account)
        for name, env in sorted(envs.envs.items())
    ]
    print_table(["", "name", "server", "namespace", "account"], rows, output)


@env_app.command("add")
def env_add(
    name: Annotated[str, typer.Argument(help="env name")],
    server: Annotated[
        str | None, typer.Option("--server", help="host:port of micro server")
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option("--proxy", help="host:port of a micro proxy (instead of --server)"),
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="namespace to log in to")
    ] = "micro",
) -> None:
    """Add an env (micro env use NAME switches to it)."""
    if (server is None) == (proxy is None):
        fail("give either --server or --proxy")
    address = server if server is not None else proxy
    assert address is not None
    try:
        check_env_name(name)
        check_server(address, "--server" if server is not None else "--proxy")
    except ValueError as exc:
        fail(str(exc))
    with edit_envs() as envs:
        if name in envs.envs:
            fail(f"env {name!r} exists (micro env remove {name} first)")
        # through a proxy every call goes to the proxy: it is the env's server
        envs.envs[name] = Env(address, namespace)
    via = "server" if server is not None else "proxy"
    typer.echo(f"added env {name} ({via} {address}, namespace {namespace})")


@env_app.command("use")
def env_use(name: Annotated[str, typer.Argument(help="env name")]) -> None:
    """Make an env the current one."""
    with edit_envs() as envs:
        env = envs.envs.get(name)
        if env is None:
            fail(f"no env named {name!r} (see `micro env`)")
        envs.current = name
    typer.echo(f"using env {name} (server {env.server})")


@env_app.command("remove")
def env_remove(name: Annotated[str, typer.Argument(help="env name")]) -> None:
    """Remove an env and its saved session (not local)."""
    if name == LOCAL:
        fail(f"the env {LOCAL!r} cannot be removed")
    with edit_envs() as envs:
        env = envs.envs.pop(name, None)
        if env is None:
            fail(f"no env named {name!r} (see `micro env`)")
        if envs.current == name:
            envs.current = LOCAL
    typer.echo(f"removed env {name}")
    if env.logged_in:
        typer.echo(
            "note: its session was forgotten, not ended on the server (micro logout does both)",
            err=True,
        )


# -- auth management -----------------------------------------------------------------------


def _manage(work: Callable[[RpcAuth], Awaitable[T]]) -> T:
    """Run ``work`` against the auth service with the CLI's credential."""

    async def go() -> T:
        from ..auth.rpc import RpcAuth
        from ..errors import MicroError
        from .common import connect

        async with connect() as client:
            try:
                return await work(RpcAuth(server_address(), client))
            except MicroError as exc:
                anonymous = client.credentials is None or client.credentials() is None
                if exc.code == "unauthorized" and anonymous:
                    name, _ = _env_in_use()
                    fail(f"unauthorized: not logged in (env {name}): micro login")
                raise

    return run(go())


def _secret_note(what: str) -> None:
    typer.echo(f"note: the {what} is shown only this once; keep it safe", err=True)


@create_app.command("account")
def create_account(
    id: Annotated[str, typer.Argument(help="account id")],
    secret: Annotated[
        str | None, typer.Option("--secret", help="its secret (default: a generated one)")
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="a scope it has (repeatable)")
    ] = None,
    type: Annotated[
        Literal["user", "service"], typer.Option("--type", help="user or service")
    ] = "user",
    namespace: Namespace = "",
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata (repeatable)")
    ] = None,
) -> None:
    """Create an account; prints a generated secret (only this once)."""
    metadata = parse_pairs(meta or [], "--meta")
    account, new_secret = _manage(
        lambda a: a.create_account(
            id, secret=secret, type=type, scopes=scope or [], metadata=metadata, namespace=namespace
        )
    )
    typer.echo(f"created {account.type} account {account.id} in namespace {account.namespace}")
    if secret is None:
        typer.echo(f"secret: {new_secret}")
        _secret_note("secret")


@create_app.command("rule")
def create_rule(
    id: Annotated[str, typer.Argument(help="rule id")],
    scope: Annotated[
        str, typer.Option("--scope", help="who: a scope, '*' any account, '' everyone")
    ],
    resource: Annotated[
        str,
        typer.Option("--resource", help="SERVICE[:ENDPOINT], '*' wildcards (greeter:Greeter.*)"),
    ],
    access: Annotated[
        Literal["grant", "deny"], typer.Option("--access", help="grant or deny")
    ] = "grant",
    priority: Annotated[int, typer.Option("--priority", help="higher is evaluated first")] = 0,
    namespace: Namespace = "",
) -> None:
    """Add a rule granting or denying callers with a scope access to a resource."""
    from ..auth import Resource, Rule

    service, _, endpoint = resource.partition(":")
    if not service:
        fail(f"--resource {resource!r} is not SERVICE[:ENDPOINT]")
    rule = Rule(id, scope, Resource(service, endpoint or "*"), access, priority)
    _manage(lambda a: a.create_rule(rule, namespace))
    who = f"scope {scope!r}" if scope else "everyone"
    typer.echo(f"created rule {id}: {access} {who} on {_resource(rule)}")


@create_app.command("key")
def create_key(
    name: Annotated[str, typer.Option("--name", help="what the key is for")] = "",
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="expires after (30d, 12h; default: never)")
    ] = None,
    account: Annotated[
        str, typer.Option("--account", help="whose key (default: yours)", show_default=False)
    ] = "",
    namespace: Namespace = "",
) -> None:
    """Create an API key; prints it (only this once)."""
    seconds = parse_seconds(ttl, "--ttl") if ttl is not None else None
    if seconds is not None and seconds <= 0:
        fail("--ttl must be more than 0")
    key, secret = _manage(
        lambda a: a.create_key(account, name=name, ttl=seconds, namespace=namespace)
    )
    expires = f", expires {_when(key.expires)}" if key.expires else ""
    typer.echo(f"created key {key.id} of {key.account} in namespace {key.namespace}{expires}")
    typer.echo(f"key: {secret}")
    _secret_note("key")


def _resource(rule: Any) -> str:
    return f"{rule.resource.service}:{rule.resource.endpoint}"


def _full(value: Any) -> Any:
    """A struct as plain data with every field (defaults included: scripts need them)."""
    import msgspec

    if isinstance(value, msgspec.Struct):
        return {f: _full(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, list):
        return [_full(v) for v in value]
    if isinstance(value, dict):
        return {k: _full(v) for k, v in value.items()}
    return value


def _show(
    items: Sequence[Any], columns: list[str], row: Callable[[Any], tuple[Any, ...]], output: str
) -> None:
    if output == "json":
        print_json([_full(item) for item in items])
        return
    print_table(columns, [row(item) for item in items], output)


@list_app.command("accounts")
def list_accounts(namespace: Namespace = "", output: Output = "table") -> None:
    """The accounts of a namespace."""
    accounts = _manage(lambda a: a.list_accounts(namespace))
    _show(
        sorted(accounts, key=lambda x: x.id),
        ["id", "type", "namespace", "scopes", "metadata", "created"],
        lambda x: (
            x.id,
            x.type,
            x.namespace,
            ",".join(x.scopes),
            ",".join(f"{k}={v}" for k, v in sorted(x.metadata.items())),
            _when(x.created),
        ),
        output,
    )


@list_app.command("rules")
def list_rules(namespace: Namespace = "", output: Output = "table") -> None:
    """The rules of a namespace, in the order they are evaluated."""
    rules = _manage(lambda a: a.list_rules(namespace))
    ordered = sorted(rules, key=lambda r: (-r.priority, r.id))
    _show(
        ordered,
        ["id", "scope", "resource", "access", "priority"],
        lambda r: (
            r.id,
            repr(r.scope) if not r.scope else r.scope,
            _resource(r),
            r.access,
            r.priority,
        ),
        output,
    )


@list_app.command("keys")
def list_keys(
    namespace: Namespace = "",
    account: Annotated[
        str | None, typer.Option("--account", help="only this account's keys")
    ] = None,
    output: Output = "table",
) -> None:
    """API keys (their ids, never the keys)."""
    keys = _manage(lambda a: a.list_keys(namespace, account))
    _show(
        sorted(keys, key=lambda k: (k.account, k.created)),
        ["id", "account", "namespace", "name", "created", "expires"],
        lambda k: (
            k.id,
            k.account,
            k.namespace,
            k.name,
            _when(k.created),
            _when(k.expires) or "never",
        ),
        output,
    )


@delete_app.command("account")
def delete_account(id: str, namespace: Namespace = "") -> None:
    """Delete an account and its API keys; its sessions stop working."""
    _manage(lambda a: a.delete_account(id, namespace))
    typer.echo(f"deleted account {id}")


@delete_app.command("rule")
def delete_rule(id: str, namespace: Namespace = "") -> None:
    """Delete a rule."""
    _manage(lambda a: a.delete_rule(id, namespace))
    typer.echo(f"deleted rule {id}")


@delete_app.command("key")
def delete_key(
    id: Annotated[str, typer.Argument(help="key id (not the key)")], namespace: Namespace = ""
) -> None:
    """Delete an API key."""
    _manage(lambda a: a.delete_key(id, namespace))
    typer.echo(f"deleted key {id}")


@auth_app.command("rotate-keys")
def rotate_keys() -> None:
    """Sign with a new key (tokens signed by the old one stay valid until they expire)."""
    kid = _manage(lambda a: a.rotate_keys())
    typer.echo(f"signing with key {kid}")


def register(app: typer.Typer) -> None:
    """Attach ``micro login``, ``logout``, ``user``, ``env`` and ``auth`` to the root CLI."""
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("user")(user)
    app.add_typer(env_app, name="env")
    app.add_typer(auth_app, name="auth")
