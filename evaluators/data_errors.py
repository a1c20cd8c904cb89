"""The one exception of the data loaders (its own module so that every loader can raise it)."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Missing, malformed or incompatible data; the message says what was expected."""
