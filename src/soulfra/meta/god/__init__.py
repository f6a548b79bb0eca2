"""soulfra.meta.god: the god-mode command handlers, one module per kind of command, and what they share.

The engine (``soulfra.meta.engine``) owns the instances and picks a handler from its table by command type; a handler
gets a ``GodContext`` (the narrow part of the engine it may use) and never starts, stops or lists instances itself.
Every handler leaves its trace in the input log of each world it touches (an input, or a ``Mark`` that changes
nothing), and reaches into a world's state only to copy it (forks, merges) or to swap in a rebuilt one (revert).
"""
