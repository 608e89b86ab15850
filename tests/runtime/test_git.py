"""Sources from a local git repository: PATH@branch / PATH@commit, pinned and exported."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from micro import MicroError
from micro.runtime import ServiceSpec
from micro.runtime.local import LocalRuntime

from .runtime_support import make_runtime, wait_log, wait_status

PRINT = """
    import time
    print("CODE {}", flush=True)
    time.sleep(3600)
"""


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return done.stdout.strip()


def _commit(repo: Path, label: str) -> str:
    (repo / "main.py").write_text(textwrap.dedent(PRINT.format(label)))
    _git(repo, "add", "main.py")
    _git(repo, "commit", "-q", "-m", label)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    return path


async def test_a_branch_is_pinned_and_run_from_an_export(
    runtime: LocalRuntime, repo: Path, data_dir: Path
) -> None:
    first = _commit(repo, "one")
    await runtime.create(ServiceSpec("gitsvc", f"{repo}@main"))
    st = await wait_status(runtime, "gitsvc")
    assert st.source == f"{repo}@{first}"
    await wait_log(runtime, "gitsvc", "CODE one")
    assert (data_dir / "sources" / "gitsvc" / first / "main.py").is_file()

    second = _commit(repo, "two")  # the branch moves; the running service does not
    (repo / "main.py").write_text("raise SystemExit('the work tree is never run')\n")
    await runtime.update(ServiceSpec("gitsvc", f"{repo}@main", version="v2"))
    st = await wait_status(runtime, "gitsvc")
    assert st.source == f"{repo}@{second}" and st.version == "v2"
    await wait_log(runtime, "gitsvc", "CODE two")

    await runtime.update(ServiceSpec("gitsvc", f"{repo}@{first[:10]}", version="back"))
    assert (await wait_status(runtime, "gitsvc")).source == f"{repo}@{first}"


async def test_a_restart_recreates_a_missing_export(
    data_dir: Path, repo: Path
) -> None:
    commit = _commit(repo, "one")
    async with make_runtime(data_dir) as rt:
        await rt.create(ServiceSpec("gitsvc", f"{repo}@main"))
        await wait_log(rt, "gitsvc", "CODE one")
    shutil.rmtree(data_dir / "sources")
    _commit(repo, "two")
    async with make_runtime(data_dir) as rt:
        st = await wait_status(rt, "gitsvc")
        assert st.source == f"{repo}@{commit}"  # still the pinned commit
        assert (data_dir / "sources" / "gitsvc" / commit / "main.py").is_file()


@pytest.mark.parametrize(
    ("suffix", "message"),
    [("@nope", "'nope' names no commit"), ("@-x", "revision '-x' is invalid")],
)
async def test_bad_revisions_are_refused(
    runtime: LocalRuntime, repo: Path, suffix: str, message: str
) -> None:
    _commit(repo, "one")
    with pytest.raises(MicroError) as info:
        await runtime.create(ServiceSpec("gitsvc", f"{repo}{suffix}"))
    assert info.value.code == "bad_request" and message in info.value.detail
    assert await runtime.read() == []


async def test_a_commit_without_main_py_is_refused(runtime: LocalRuntime, repo: Path) -> None:
    (repo / "README").write_text("no service here\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "readme")
    with pytest.raises(MicroError) as info:
        await runtime.create(ServiceSpec("gitsvc", f"{repo}@main"))
    assert "has no main.py" in info.value.detail
