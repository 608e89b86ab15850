"""Fixtures for the runtime tests: a started local runtime on a temporary data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from micro.runtime.local import LocalRuntime

from .runtime_support import make_runtime


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The runtime's data dir."""
    return tmp_path / "data"


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """Where tests write their service directories."""
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.fixture
async def runtime(data_dir: Path) -> AsyncIterator[LocalRuntime]:
    """A started runtime, closed after the test."""
    rt = make_runtime(data_dir)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.close()
