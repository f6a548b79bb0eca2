"""``python -m soulfra``: the same as the ``soulfra`` command."""

from soulfra.cli import main

if __name__ == "__main__":  # not when a process started by multiprocessing (spawn) imports it again
    main()
