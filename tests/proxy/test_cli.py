"""``micro env add NAME --proxy`` and the commands' registration."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from micro.cli import auth, proxy, sidecar
from micro.cli.envs import load_envs


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("MICRO_DATA_DIR", str(tmp_path))
    for name in ("MICRO_ENV", "MICRO_SERVER"):
        monkeypatch.delenv(name, raising=False)
    cli = typer.Typer()
    auth.register(cli)
    proxy.register(cli)
    sidecar.register(cli)
    return cli


def test_env_add_proxy(app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["env", "add", "remote", "--proxy", "10.0.0.9:8082"])
    assert result.exit_code == 0, result.output
    assert "proxy 10.0.0.9:8082" in result.output
    assert load_envs(tmp_path).envs["remote"].server == "10.0.0.9:8082"
    both = runner.invoke(app, ["env", "add", "x", "--proxy", "a:1", "--server", "b:2"])
    assert both.exit_code == 1
    neither = runner.invoke(app, ["env", "add", "x"])
    assert neither.exit_code == 1
    bad = runner.invoke(app, ["env", "add", "x", "--proxy", "nowhere"])
    assert bad.exit_code == 1
    assert "x" not in load_envs(tmp_path).envs


def test_commands_are_registered(app: typer.Typer) -> None:
    runner = CliRunner()
    assert "--address" in runner.invoke(app, ["proxy", "--help"]).output
    assert "--endpoint" in runner.invoke(app, ["service", "--help"]).output
    bad = runner.invoke(app, ["service", "--name", "legacy", "--endpoint", "ftp://x"])
    assert bad.exit_code == 1
