"""Benchmarks of Micro for Python, run as ``python -m bench <name>``.

Each benchmark is a module with a one-line :data:`DESCRIPTION` and a ``main(argv) -> int``;
:mod:`bench.__main__` lists them. Benchmarks compare the framework against its peers in the
same run and can write their tables to ``docs/benchmarks.md``. They are not timed tests.
"""
