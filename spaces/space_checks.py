"""Checks and shape arithmetic shared by the spaces: ``SpaceError``, divisors, kernel and width lists."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SpaceError", "divisors", "common_divisors", "check_kernels", "check_widths"]


class SpaceError(ValueError):
    """Bad space options or parameters that do not belong to a space; the message names them."""


# -- shape arithmetic shared by the families ------------------------------------------------
def divisors(n: int) -> list[int]:
    """The positive divisors of ``n``, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def common_divisors(a: int, b: int) -> list[int]:
    """The positive integers that divide both ``a`` and ``b`` (the divisors of gcd(a, b))."""
    return divisors(math.gcd(a, b))


def check_kernels(kernels: Any, field_name: str = "kernels") -> tuple[int, ...]:
    """A non-empty tuple of distinct odd kernel sizes >= 3, or ``SpaceError``."""
    if isinstance(kernels, int) and not isinstance(kernels, bool):
        kernels = (kernels,)
    if not isinstance(kernels, (tuple, list)) or not kernels:
        raise SpaceError(f"option '{field_name}' must be a non-empty list of odd kernel sizes >= 3, got {kernels!r}")
    for k in kernels:
        if not isinstance(k, int) or isinstance(k, bool) or k < 3 or k % 2 == 0:
            raise SpaceError(f"option '{field_name}': {k!r} is not an odd kernel size >= 3 (e.g. 3, 5, 7)")
    if len(set(kernels)) != len(kernels):
        raise SpaceError(f"option '{field_name}' lists a kernel size twice: {list(kernels)}")
    return tuple(kernels)


def check_widths(widths: Any) -> tuple[float, ...]:
    """A non-empty tuple of distinct positive width multipliers, or ``SpaceError``."""
    if isinstance(widths, (int, float)) and not isinstance(widths, bool):
        widths = (widths,)
    if not isinstance(widths, (tuple, list)) or not widths:
        raise SpaceError(f"option 'widths' must be a non-empty list of positive multipliers, got {widths!r}")
    out = []
    for w in widths:
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not w > 0:
            raise SpaceError(f"option 'widths': {w!r} is not a positive width multiplier (e.g. 1.0, 1.5, 2.0)")
        out.append(float(w))
    if len(set(out)) != len(out):
        raise SpaceError(f"option 'widths' lists a multiplier twice: {out}")
    return tuple(out)
