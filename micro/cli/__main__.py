"""``python -m micro.cli`` is the ``micro`` command."""

from . import main

main()
