"""Conformance suites: the behaviour every backend of a block must show.

Each module holds one block's suite as a class of test methods that use a fixture named
after the block (``store``, ``config``, ...). ``tests/conformance`` subclasses them with a
fixture parametrised over the backends this project ships; a third-party backend runs the
same suite by subclassing it with a fixture of its own.
"""
