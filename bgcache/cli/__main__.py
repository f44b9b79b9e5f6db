"""``python -m bgcache.cli``: the same as the ``bgcache`` script."""

from bgcache.cli import main

main()
