"""Checking a ServiceSpec, and resolving the ``config:PATH`` values of its environment."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from ..config import Config
from ..errors import MicroError, bad_request
from . import MAX_INSTANCES, ServiceSpec
from ._git import checkout, is_git_source, pin, run_dir
from ._supervisor import SpawnError

__all__ = ["CONFIG_NAMESPACE", "CONFIG_PREFIX", "check_source", "prepare", "resolve_env",
           "validate"]

CONFIG_PREFIX = "config:"
"""An env value ``config:PATH`` is read from the config at PATH."""

CONFIG_NAMESPACE = "micro"
"""The config namespace those paths are in."""

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_MAX_NAME = 100
_MAX_MEMORY_MB = 1 << 30
_MAX_OPEN_FILES = 1 << 20


def check_source(source: str, run_dir: str) -> None:
    """``bad_request`` unless ``run_dir`` (where ``source`` runs) is an absolute directory
    holding main.py."""
    path = Path(run_dir)
    if not path.is_absolute():
        raise bad_request("runtime", f"source {source!r} must be an absolute path")
    if not path.is_dir():
        raise bad_request("runtime", f"source {source!r} is not a directory")
    if not (path / "main.py").is_file():
        raise bad_request("runtime", f"source {source!r} has no main.py")


def validate(spec: ServiceSpec) -> None:
    """Raise ``bad_request`` naming what is wrong with ``spec``."""
    if len(spec.name) > _MAX_NAME or not _NAME.fullmatch(spec.name):
        raise bad_request(
            "runtime",
            f"service name {spec.name!r} is invalid: use lowercase letters, digits, '.', '_' "
            f"and '-', starting with a letter or digit, at most {_MAX_NAME} characters",
        )
    if not spec.version or "\n" in spec.version:
        raise bad_request("runtime", f"version {spec.version!r} is invalid")
    if not is_git_source(spec.source):
        check_source(spec.source, spec.source)
    for key, value in spec.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise bad_request("runtime", f"environment variable {key!r} is invalid")
        if value.startswith(CONFIG_PREFIX) and not value[len(CONFIG_PREFIX):]:
            raise bad_request("runtime", f"environment variable {key!r}: config: needs a path")
    if not 1 <= spec.instances <= MAX_INSTANCES:
        raise bad_request(
            "runtime", f"instances must be 1 to {MAX_INSTANCES}, got {spec.instances}"
        )
    memory, files = spec.limits.memory_mb, spec.limits.open_files
    if memory is not None and not 1 <= memory <= _MAX_MEMORY_MB:
        raise bad_request("runtime", f"limits.memory_mb must be 1 to {_MAX_MEMORY_MB}")
    if files is not None and not 1 <= files <= _MAX_OPEN_FILES:
        raise bad_request("runtime", f"limits.open_files must be 1 to {_MAX_OPEN_FILES}")


async def prepare(spec: ServiceSpec, sources_root: Path) -> ServiceSpec:
    """``spec`` checked, with a git source pinned to its commit and that commit exported
    under ``sources_root`` (see ``_git``)."""
    validate(spec)
    if not is_git_source(spec.source):
        return spec
    spec = msgspec.structs.replace(spec, source=await pin(spec.source))
    await checkout(sources_root, spec.name, spec.source)
    check_source(spec.source, run_dir(sources_root, spec.name, spec.source))
    return spec


async def resolve_env(spec: ServiceSpec, config: Config | None) -> dict[str, str]:
    """``spec.env`` with every ``config:PATH`` value replaced by the value at PATH (a string
    as is, anything else as JSON); SpawnError when a path is missing or unreadable."""
    env: dict[str, str] = {}
    for key, value in spec.env.items():
        if not value.startswith(CONFIG_PREFIX):
            env[key] = value
            continue
        path = value[len(CONFIG_PREFIX):]
        if config is None:
            raise SpawnError(f"{key}={value}: the runtime has no config to read it from")
        try:
            found = await config.get(CONFIG_NAMESPACE, path, secrets=True)
        except MicroError as exc:
            raise SpawnError(f"{key}={value}: cannot read the config: {exc.detail}") from exc
        if found is None:
            raise SpawnError(
                f"{key}={value}: config path {path!r} (namespace {CONFIG_NAMESPACE!r}) is not set"
            )
        env[key] = found if isinstance(found, str) else json.dumps(found)
    return env
