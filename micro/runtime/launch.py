"""Launch one service for the local runtime: ``python -m micro.runtime.launch <source>``.

Why the runtime does not simply run ``python main.py``:

* A supervised service must not outlive its supervisor. If ``micro server`` is SIGKILLed or
  crashes, nobody would stop its services, and the next server would start a second copy of
  each. On Linux the launcher asks the kernel to send SIGTERM to the service when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``, which only a process can ask for itself, after fork).
  Linux means the parent *thread*: the runtime's event loop must live as long as it does.
* Where that is not enough (other systems, or a service that ignores SIGTERM), the next
  server stops the orphans itself; it recognises them by this module's name in their command
  line, so it never kills an unrelated process that reused a recorded pid.
* Resource limits (``MICRO_RUNTIME_LIMITS``, the JSON of ``ServiceSpec.limits``) are set
  with ``setrlimit`` here, in the service's own process, before ``main.py`` runs.
* ``main.py`` should import its sibling modules, so the source directory goes first on
  ``sys.path``, and it runs as ``__main__`` so its ``if __name__ == "__main__"`` block runs.
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import signal
import sys

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """On Linux, get SIGTERM when the parent process (the runtime) exits."""
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        prctl.restype = ctypes.c_int
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    # The parent may have died between fork and prctl; then the signal never comes.
    parent = os.environ.get("MICRO_RUNTIME_PARENT", "")
    if parent.isdigit() and os.getppid() != int(parent):
        sys.exit("micro runtime: the runtime exited before this service started")


def apply_limits(raw: str) -> None:
    """Set ``RLIMIT_AS`` (``memory_mb``) and ``RLIMIT_NOFILE`` (``open_files``) from the JSON
    the runtime passes; a limit can only be lowered, never raised above the hard one."""
    if not raw:
        return
    import resource

    limits = json.loads(raw)
    wanted = [
        (resource.RLIMIT_AS, limits.get("memory_mb"), 1024 * 1024, "memory_mb"),
        (resource.RLIMIT_NOFILE, limits.get("open_files"), 1, "open_files"),
    ]
    for which, value, unit, name in wanted:
        if value is None:
            continue
        _, hard = resource.getrlimit(which)
        soft = value * unit
        if hard != resource.RLIM_INFINITY and soft > hard:
            sys.exit(f"micro runtime: limits.{name}={value} is above the hard limit")
        resource.setrlimit(which, (soft, soft))


def main(argv: list[str]) -> None:
    """Run ``<source>/main.py`` as the program ``__main__``."""
    if len(argv) != 2:
        sys.exit("usage: python -m micro.runtime.launch <source directory>")
    source = os.path.abspath(argv[1])
    die_with_parent()
    apply_limits(os.environ.pop("MICRO_RUNTIME_LIMITS", ""))
    os.chdir(source)
    if sys.path[0] != source:
        sys.path.insert(0, source)
    script = os.path.join(source, "main.py")
    sys.argv = [script]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)
