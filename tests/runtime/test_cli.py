"""``micro run|status|logs|update|kill`` with several instances, against a runtime service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from micro.cli import runtime as cli
from micro.runtime.local import LocalRuntime
from micro.runtime.rpc import RpcRuntime
from micro.testing import eventually

from .runtime_support import SLEEPER, wait_status, write_source
from .test_rpc import rpc  # noqa: F401 - the fixture

INSTANCE = """
    import os, time
    print("instance", os.environ["MICRO_RUNTIME_INSTANCE"], flush=True)
    time.sleep(3600)
"""


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("run")(cli.run_service)
    app.command("update")(cli.update)
    app.command("status")(cli.status)
    app.command("logs")(cli.logs)
    app.command("kill")(cli.kill)
    return app


async def test_instances_from_the_cli(
    runtime: LocalRuntime, rpc: RpcRuntime, sources: Path
) -> None:
    app, runner = _app(), CliRunner()
    env = {"MICRO_SERVER": rpc.address, "COLUMNS": "200"}

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), env=env)
        return result.exit_code, result.output

    source = write_source(sources, "multi", INSTANCE)
    code, out = await asyncio.to_thread(
        invoke, "run", str(source), "--instances", "2", "--open-files", "200"
    )
    assert code == 0 and "started multi" in out and "(2 instances)" in out, out
    await wait_status(runtime, "multi")
    [st] = await runtime.read("multi")
    assert len(st.instances) == 2

    code, out = await asyncio.to_thread(invoke, "status", "-o", "json")
    assert code == 0, out
    [row] = json.loads(out)
    assert row["status"] == "running" and row["pid"] == row["instances"][0]["pid"]
    assert [i["index"] for i in row["instances"]] == [0, 1]

    code, out = await asyncio.to_thread(invoke, "status")
    assert code == 0 and "multi (2)" in out and "#0" in out and "#1" in out, out

    async def logged() -> bool:
        code, out = await asyncio.to_thread(invoke, "logs", "multi")
        return code == 0 and "[0] instance 0" in out and "[1] instance 1" in out

    await eventually(logged, message="logs of both instances")

    code, out = await asyncio.to_thread(invoke, "update", str(source), "--version", "v2")
    assert code == 0 and "updated multi" in out, out
    [st] = await runtime.read("multi")  # as many instances as before
    assert st.version == "v2" and [i.version for i in st.instances] == ["v2", "v2"]

    code, out = await asyncio.to_thread(
        invoke, "update", str(source), "--version", "v3", "--instances", "1"
    )
    assert code == 0, out
    [st] = await runtime.read("multi")
    assert st.version == "v3" and len(st.instances) == 1

    code, out = await asyncio.to_thread(invoke, "kill", "multi")
    assert code == 0 and await runtime.read() == []


async def test_bad_flags_are_refused(rpc: RpcRuntime, sources: Path) -> None:
    app, runner = _app(), CliRunner()
    source = str(write_source(sources, "x", SLEEPER))
    for args, message in [
        (["--instances", "0"], "--instances must be 1 to 32"),
        (["--instances", "33"], "--instances must be 1 to 32"),
        (["--memory-mb", "0"], "--memory-mb and --open-files must be positive"),
    ]:
        result = await asyncio.to_thread(
            runner.invoke, app, ["run", source, *args], env={"MICRO_SERVER": rpc.address}
        )
        assert result.exit_code == 1 and message in result.output, result.output
    assert await rpc.read() == []


async def test_run_from_a_git_branch(
    runtime: LocalRuntime, rpc: RpcRuntime, tmp_path: Path
) -> None:
    from .test_git import _commit, _git

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    commit = _commit(repo, "one")
    result = await asyncio.to_thread(
        CliRunner().invoke, _app(), ["run", f"{repo}@main"], env={"MICRO_SERVER": rpc.address}
    )
    assert result.exit_code == 0, result.output
    st = await wait_status(runtime, "repo")
    assert st.source == f"{repo}@{commit}"
