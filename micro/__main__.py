"""``python -m micro`` is the ``micro`` command."""

from .cli import main

main()
