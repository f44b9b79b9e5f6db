"""``python -m bgcache``: the same as the ``bgcache`` script."""

from bgcache.cli import main

main()
