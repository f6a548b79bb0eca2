"""``python -m soulfra``: the same as the ``soulfra`` command."""

from soulfra.cli import main

main()
