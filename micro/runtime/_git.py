"""Sources from a local git repository: ``/path/to/repo@branch`` (or ``@tag``, ``@commit``).

The runtime pins such a source to the commit the revision names when the service is created
or updated (the spec's source becomes ``/path/to/repo@<full commit id>``, so a restart runs
the same code even if the branch moved), and runs a copy of that commit's tree exported with
``git archive`` into ``<data_dir>/sources/<name>/<commit>`` (built under a temporary name and
renamed into place, kept while the data dir lives).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tarfile
from pathlib import Path

from ..errors import MicroError, bad_request, internal

__all__ = ["checkout", "is_git_source", "pin", "run_dir"]

_TIMEOUT = 120.0


def _split(source: str) -> tuple[str, str] | None:
    """``(repository, revision)`` when ``source`` names a git revision, else None (a plain
    directory, even one whose name contains ``@``)."""
    repo, sep, rev = source.rpartition("@")
    if not sep or not repo or not rev or Path(source).is_dir():
        return None
    return repo, rev


def _is_dir(path: str | Path) -> bool:
    return os.path.isdir(path)


def is_git_source(source: str) -> bool:
    """True for ``PATH@REVISION`` sources."""
    return _split(source) is not None


def run_dir(sources_root: Path, name: str, source: str) -> str:
    """The directory a service runs in: its source, or the export of its pinned commit."""
    split = _split(source)
    return source if split is None else str(sources_root / name / split[1])


async def _git(repo: str, *args: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", repo, *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), _TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise internal("runtime", f"git {args[0]} in {repo} took over {_TIMEOUT:g} s") from None
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        raise bad_request(
            "runtime", f"git {args[0]} in {repo} failed: {message[-1] if message else '?'}"
        )
    return out


async def pin(source: str) -> str:
    """``PATH@<full commit id>`` for ``PATH@REVISION``; ``bad_request`` if PATH is not an
    absolute path of a git repository or REVISION names no commit."""
    split = _split(source)
    if split is None:
        return source
    repo, rev = split
    if not os.path.isabs(repo) or not _is_dir(repo):
        raise bad_request("runtime", f"source {source!r}: {repo!r} is not an absolute directory")
    if rev.startswith("-"):
        raise bad_request("runtime", f"source {source!r}: revision {rev!r} is invalid")
    try:
        commit = await _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except MicroError as exc:
        raise bad_request(
            "runtime", f"source {source!r}: {rev!r} names no commit in {repo} ({exc.detail})"
        ) from exc
    return f"{repo}@{commit.decode().strip()}"


async def checkout(sources_root: Path, name: str, source: str) -> None:
    """Export the pinned commit of ``source`` into its run dir, unless already there."""
    split = _split(source)
    if split is None:
        return
    repo, commit = split
    dest = Path(run_dir(sources_root, name, source))
    if _is_dir(dest):
        return
    data = await _git(repo, "archive", "--format=tar", commit)
    tmp = dest.with_name(dest.name + ".tmp")

    def extract() -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(tmp, filter="data")
        tmp.rename(dest)

    try:
        await asyncio.to_thread(extract)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise internal("runtime", f"cannot export {source} into {dest}: {exc}") from exc
