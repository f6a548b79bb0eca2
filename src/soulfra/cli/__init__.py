"""The ``soulfra`` command, the top layer: it translates flags into calls on the layers below and prints.

``commands`` builds the command tree and its ``main``; ``server`` is the client of a running server (and
``up``/``serve``), ``god`` and ``meta`` its god-mode and package commands, ``store`` the commands that open a database
directly, ``runner`` reads input logs and runs a world on a schedule, ``console`` draws it with Rich.
"""

from soulfra.cli.commands import EXIT_CODES, EXIT_USAGE, app, main

__all__ = ["EXIT_CODES", "EXIT_USAGE", "app", "main"]
