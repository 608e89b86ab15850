"""``micro SERVICE [HANDLER] ENDPOINT --field value``: commands built from the registry.

``micro helloworld call --name Alice`` calls ``Helloworld.Call`` of ``helloworld``;
``micro helloworld other say`` calls ``Other.Say``. Flags, their types, which are required
and ``--help`` all come from the endpoint's request JSON Schema in the registry.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from .common import fail, print_json, run

if TYPE_CHECKING:
    from ..registry import EndpointInfo, ServiceInfo

_SCALARS: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


def kebab(name: str) -> str:
    """``SayHello`` -> ``say-hello``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict(schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {}))
    return schema


def _parameters(schema: dict[str, Any]) -> tuple[list[inspect.Parameter], set[str]]:
    """Typer parameters for the request fields; also which fields take JSON text."""
    obj = _object_schema(schema)
    required = set(obj.get("required", []))
    params: list[inspect.Parameter] = []
    json_fields: set[str] = set()
    for field, prop in obj.get("properties", {}).items():
        kind = prop.get("type")
        tp = _SCALARS.get(kind) if isinstance(kind, str) else None
        help_text = prop.get("description") or prop.get("title") or str(kind or "value")
        if tp is None:
            tp = str
            json_fields.add(field)
            help_text += " (JSON)"
        default = typer.Option(
            ... if field in required else None, "--" + field.replace("_", "-"), help=help_text
        )
        annotation = tp if field in required else tp | None
        params.append(
            inspect.Parameter(
                field, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    return params, json_fields


def _json_value(field: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--{field.replace('_', '-')} is not valid JSON: {exc}")


def _endpoint_command(service: str, ep: EndpointInfo) -> Callable[..., None]:
    params, json_fields = _parameters(ep.request)

    def command(**values: Any) -> None:
        from .call import call_json

        if ep.stream != "unary":
            fail(f"{ep.name} is a {ep.stream}-streaming endpoint: use `micro stream`")
        timeout = values.pop("timeout")
        request = {
            k: (_json_value(k, v) if k in json_fields else v)
            for k, v in values.items()
            if v is not None
        }
        body = json.dumps(request).encode()
        print_json(json.loads(run(call_json(service, ep.name, body, timeout, None))))

    params.append(
        inspect.Parameter(
            "timeout",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=float,
            default=typer.Option(10.0, help="seconds to wait"),
        )
    )
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = f"Call {service} {ep.name}."
    return command


def _group(help_text: str) -> typer.Typer:
    group = typer.Typer(
        help=help_text, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )

    @group.callback()
    def _() -> None:  # a callback keeps single-endpoint services in group form
        return None

    return group


def service_app(info: ServiceInfo) -> typer.Typer:
    """A command group for one service, with a command (or handler group) per endpoint."""
    own = "".join(part.capitalize() for part in re.split(r"[-_.]", info.name) if part)
    app = _group(f"Call endpoints of {info.name} ({info.version}).")
    handlers: dict[str, typer.Typer] = {}
    for ep in info.endpoints:
        handler, _, method = ep.name.partition(".")
        target = app
        if handler != own:
            target = handlers.get(handler) or _group(f"Endpoints of {handler}.")
            if handler not in handlers:
                handlers[handler] = target
                app.add_typer(target, name=kebab(handler))
        target.command(kebab(method))(_endpoint_command(info.name, ep))
    return app


def lookup(name: str) -> typer.Typer | None:
    """The command group for service ``name``, or ``None`` when no such service runs."""
    from ..errors import MicroError
    from .common import connect

    async def fetch() -> ServiceInfo | None:
        async with connect() as client:
            assert client.view is not None
            try:
                versions = await client.view.registry.get_service(name)
            except MicroError as err:
                if err.code == "not_found":
                    return None
                raise
        return versions[-1]

    info = run(fetch())
    return service_app(info) if info is not None else None
