"""A virtualenv per ``requirements.txt``: services with their own dependencies.

When a service's source holds ``requirements.txt``, it runs with the Python of
``<data_dir>/venvs/<sha256 of the file>``, created the first time it is needed with
``python -m venv --system-site-packages`` plus a ``.pth`` file that adds the runtime's own
site-packages (so ``micro`` stays importable even when the runtime itself runs in a venv),
then ``pip install -r requirements.txt``. Services with the same requirements share it. The
output of venv and pip goes to the service's log. A venv is only used once complete: it is
built under a temporary name and renamed into place.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path
from typing import IO

from ._supervisor import SpawnError

__all__ = ["REQUIREMENTS", "Venvs"]

REQUIREMENTS = "requirements.txt"

_SITE = "import json, site; print(json.dumps(site.getsitepackages()))"
_VENV_SITE = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()['purelib']))"


class Venvs:
    """The venvs under ``root``, built with ``python`` (the runtime's interpreter)."""

    def __init__(self, root: Path, python: str, timeout: float = 600.0) -> None:
        self.root = root
        self.python = python
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}

    async def python_for(self, source: str, log: IO[bytes]) -> str:
        """The interpreter to run ``source`` with: the runtime's, or that of the venv of its
        requirements (built now if new, its output written to ``log``); SpawnError if the
        venv cannot be built."""
        req = Path(source) / REQUIREMENTS
        try:
            content = req.read_bytes()
        except FileNotFoundError:
            return self.python
        except OSError as exc:
            raise SpawnError(f"cannot read {req}: {exc}") from exc
        digest = hashlib.sha256(content).hexdigest()
        venv = self.root / digest
        async with self._locks.setdefault(digest, asyncio.Lock()):
            if not (venv / "bin" / "python").exists():
                await self._build(venv, req, log)
        return str(venv / "bin" / "python")

    async def _build(self, venv: Path, req: Path, log: IO[bytes]) -> None:
        tmp = venv.with_name(venv.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._run(log, self.python, "-m", "venv", "--system-site-packages", str(tmp))
            python = str(tmp / "bin" / "python")
            parent_sites = json.loads(await self._run(None, self.python, "-c", _SITE))
            purelib = Path(json.loads(await self._run(None, python, "-c", _VENV_SITE)))
            lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in parent_sites)
            (purelib / "_micro_runtime_parent.pth").write_text(lines)
            await self._run(
                log, python, "-m", "pip", "install", "--disable-pip-version-check",
                "--no-input", "-r", str(req),
            )
            tmp.rename(venv)
        except OSError as exc:
            raise SpawnError(f"cannot create the venv for {req}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def _run(self, log: IO[bytes] | None, *args: str) -> str:
        """Run a command, its output appended to ``log`` (or returned when ``log`` is None);
        SpawnError if it fails or takes longer than ``timeout``."""
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=log if log is not None else asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SpawnError(f"`{' '.join(args)}` took more than {self.timeout:g} s") from None
        if proc.returncode != 0:
            raise SpawnError(f"`{' '.join(args)}` failed with code {proc.returncode}")
        return (out or b"").decode(errors="replace")
