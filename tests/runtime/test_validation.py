"""Bad input gets a clear error naming the problem, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from micro import MicroError
from micro.runtime import ServiceSpec
from micro.runtime.local import LocalRuntime

from .runtime_support import SLEEPER, make_runtime, wait_status, write_source


async def _error(coro: object) -> MicroError:
    with pytest.raises(MicroError) as info:
        await coro  # type: ignore[misc]
    return info.value


@pytest.mark.parametrize(
    "name", ["", "Upper", "-dash", ".dot", "a/b", "a b", "naïve", "trailing\n", "x" * 101]
)
async def test_bad_names_are_refused(runtime: LocalRuntime, sources: Path, name: str) -> None:
    err = await _error(runtime.create(ServiceSpec(name, str(write_source(sources, "s", SLEEPER)))))
    assert (err.code, err.status) == ("bad_request", 400)
    assert "service name" in err.detail
    assert await runtime.read() == []


async def test_good_names_are_accepted(runtime: LocalRuntime, sources: Path) -> None:
    source = str(write_source(sources, "s", SLEEPER))
    for name in ("a", "0", "my-svc.v2_beta"):
        await runtime.create(ServiceSpec(name, source))
    assert [s.name for s in await runtime.read()] == ["0", "a", "my-svc.v2_beta"]


async def test_a_missing_directory_is_refused(runtime: LocalRuntime, sources: Path) -> None:
    err = await _error(runtime.create(ServiceSpec("svc", str(sources / "nowhere"))))
    assert err.code == "bad_request"
    assert "is not a directory" in err.detail


async def test_a_directory_without_main_py_is_refused(
    runtime: LocalRuntime, sources: Path
) -> None:
    (sources / "empty").mkdir()
    err = await _error(runtime.create(ServiceSpec("svc", str(sources / "empty"))))
    assert err.code == "bad_request"
    assert "has no main.py" in err.detail


async def test_a_relative_source_is_refused(runtime: LocalRuntime) -> None:
    err = await _error(runtime.create(ServiceSpec("svc", "relative/dir")))
    assert err.code == "bad_request"
    assert "absolute path" in err.detail


async def test_bad_environment_variables_are_refused(
    runtime: LocalRuntime, sources: Path
) -> None:
    source = str(write_source(sources, "s", SLEEPER))
    for env in ({"": "x"}, {"A=B": "x"}, {"A": "nul\0"}):
        err = await _error(runtime.create(ServiceSpec("svc", source, env=env)))
        assert err.code == "bad_request"
        assert "environment variable" in err.detail


async def test_a_duplicate_name_is_a_conflict(runtime: LocalRuntime, sources: Path) -> None:
    source = str(write_source(sources, "s", SLEEPER))
    await runtime.create(ServiceSpec("svc", source))
    first = await wait_status(runtime, "svc")
    err = await _error(runtime.create(ServiceSpec("svc", source, version="2")))
    assert (err.code, err.status) == ("conflict", 409)
    again = await wait_status(runtime, "svc")
    assert (again.pid, again.version) == (first.pid, "latest")  # untouched


async def test_unknown_names_are_not_found(runtime: LocalRuntime, sources: Path) -> None:
    source = str(write_source(sources, "s", SLEEPER))
    for call in (
        runtime.read("ghost"),
        runtime.update(ServiceSpec("ghost", source)),
        runtime.delete("ghost"),
        _drain(runtime, "ghost"),
    ):
        err = await _error(call)
        assert (err.code, err.status) == ("not_found", 404)
        assert "'ghost'" in err.detail


async def _drain(runtime: LocalRuntime, name: str) -> None:
    async for _ in runtime.logs(name):
        pass


async def test_update_validates_too(runtime: LocalRuntime, sources: Path) -> None:
    source = str(write_source(sources, "s", SLEEPER))
    await runtime.create(ServiceSpec("svc", source))
    first = await wait_status(runtime, "svc")
    err = await _error(runtime.update(ServiceSpec("svc", str(sources / "nowhere"))))
    assert err.code == "bad_request"
    assert (await wait_status(runtime, "svc")).pid == first.pid


async def test_calls_before_start_and_after_close_are_unavailable(
    data_dir: Path, sources: Path
) -> None:
    rt = make_runtime(data_dir)
    assert (await _error(rt.read())).code == "unavailable"
    await rt.start()
    await rt.close()
    err = await _error(rt.create(ServiceSpec("svc", str(write_source(sources, "s", SLEEPER)))))
    assert err.code == "unavailable"


def test_bad_options_are_refused(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="backoff_initial"):
        LocalRuntime(data_dir, "127.0.0.1:1", backoff_initial=5, backoff_max=1)
    with pytest.raises(ValueError, match="stop_timeout"):
        LocalRuntime(data_dir, "127.0.0.1:1", stop_timeout=-1)
