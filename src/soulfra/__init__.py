"""Soulfra: deterministic autonomous multi-agent worlds, and god-mode control over them."""

from __future__ import annotations

from soulfra.errors import SoulfraError

__version__ = "0.1.0"

__all__ = ["SoulfraError", "__version__"]
