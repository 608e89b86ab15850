"""``micro new NAME``: scaffold a service that runs as generated."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template
from typing import Annotated

import typer

from .common import fail

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def handler_name(service: str) -> str:
    """``my-service`` -> ``MyService``."""
    return "".join(part.capitalize() for part in re.split(r"[-_]", service) if part)


def new(
    name: Annotated[str, typer.Argument(help="service name: lower case, digits, hyphens")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="where to create it (default: ./NAME)")
    ] = None,
) -> None:
    """Create a new service: main.py, a test using micro.testing, and a README."""
    if not _NAME.match(name):
        fail(f"service name {name!r} must start with a letter and use a-z, 0-9 and '-'")
    target = directory or Path(name)
    if target.exists() and any(target.iterdir()):
        fail(f"{target} already exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    values = {"name": name, "handler": handler_name(name)}
    templates = resources.files("micro.cli") / "templates" / "service"
    for item in templates.iterdir():
        if not item.name.endswith(".tmpl"):
            continue
        text = Template(item.read_text(encoding="utf-8")).substitute(values)
        (target / item.name.removesuffix(".tmpl")).write_text(text, encoding="utf-8")
    typer.echo(f"created {target}/ (main.py, test_main.py, README.md)")
    typer.echo(f"run it:  micro run {target}")
    typer.echo(f'call it: micro call {name} {values["handler"]}.Call \'{{"name": "Alice"}}\'')
