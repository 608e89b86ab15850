"""A service with a requirements.txt runs in a virtualenv of its own (built once)."""

from __future__ import annotations

from pathlib import Path

from micro.runtime import ServiceSpec

from .runtime_support import make_runtime, wait_log, wait_status, write_source

WHERE = """
    import sys, time
    import micro
    print("PREFIX", sys.prefix, flush=True)
    time.sleep(3600)
"""


async def test_requirements_get_a_shared_venv(data_dir: Path, sources: Path) -> None:
    one = write_source(sources, "one", WHERE)
    two = write_source(sources, "two", WHERE)
    for source in (one, two):
        (source / "requirements.txt").write_text("# nothing to install\n")
    async with make_runtime(data_dir) as rt:
        await rt.create(ServiceSpec("one", str(one)))
        log = await wait_log(rt, "one", "PREFIX", timeout=120)
        await rt.create(ServiceSpec("two", str(two)))
        log_two = await wait_log(rt, "two", "PREFIX", timeout=60)
    [venv] = [p for p in (data_dir / "venvs").iterdir()]
    assert len(venv.name) == 64  # sha256 of the requirements
    assert f"PREFIX {venv}" in log and f"PREFIX {venv}" in log_two  # micro importable too
    assert len(log_two) == 2 and "starting two" in log_two[0]  # reused: nothing built


async def test_a_venv_that_cannot_be_built_keeps_the_service_from_starting(
    data_dir: Path, sources: Path
) -> None:
    source = write_source(sources, "broken", WHERE)
    (source / "requirements.txt").write_text("./no-such-directory\n")
    async with make_runtime(data_dir, backoff_initial=5.0, backoff_max=5.0) as rt:
        await rt.create(ServiceSpec("broken", str(source)))
        st = await wait_status(rt, "broken", status_is="crashed", timeout=120)
        log = await wait_log(rt, "broken", "failed with code")
    assert "pip install" in st.error and "failed with code 1" in st.error
    assert not (data_dir / "venvs").exists() or not [
        p for p in (data_dir / "venvs").iterdir() if len(p.name) == 64
    ]
    assert any("no-such-directory" in line for line in log)  # pip's own message
