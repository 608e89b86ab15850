"""``python -m bench <benchmark> [options]``: run one benchmark, or list them."""

from __future__ import annotations

import importlib
import sys

# name -> module; each module has DESCRIPTION (one line) and main(argv: list[str]) -> int.
# A new benchmark (e.g. "gateway": "bench.gateway") is one more entry here.
BENCHMARKS: dict[str, str] = {
    "rpc": "bench.rpc",
    "events": "bench.events",
    "store": "bench.store",
    "gateway": "bench.gateway",
}


def usage() -> str:
    """The usage text listing every available benchmark."""
    lines = ["usage: python -m bench <benchmark> [options]", "", "benchmarks:"]
    for name, module_name in BENCHMARKS.items():
        description = getattr(importlib.import_module(module_name), "DESCRIPTION", "")
        lines.append(f"  {name:<10} {description}")
    lines += ["", "`python -m bench <benchmark> --help` lists a benchmark's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the benchmark named by the first argument."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    module_name = BENCHMARKS.get(args[0])
    if module_name is None:
        print(f"unknown benchmark {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    code: int = module.main(args[1:])
    return code


if __name__ == "__main__":
    sys.exit(main())
