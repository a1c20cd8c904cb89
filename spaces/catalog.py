"""``SPACES`` and ``get_space``: the names the user gives to ``--space``.

A space factory is ``factory(backbone, input_shape, num_classes, *, <options>) -> Space``; its
keyword-only parameters are the space's options (an unknown option is an error that lists
them). ``SPACES`` lists the built-in spaces explicitly; other modules add theirs with
``register_space(name, factory)``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from .backbones import BACKBONES
from .decomp import decomp_space
from .groups import groups_space
from .hetconv import hetconv_space
from .igc import igc_space
from .learned import learned_space
from .mixed import mixed_space
from .space import Space, SpaceError

__all__ = ["SPACES", "BACKBONES", "get_space", "register_space", "space_options"]

SPACES: dict[str, Callable[..., Space]] = {
    "groups": groups_space, "igc": igc_space, "hetconv": hetconv_space, "decomp": decomp_space,
    "mixed": mixed_space, "learned": learned_space,
}


def register_space(name: str, factory: Callable[..., Space]) -> Callable[..., Space]:
    """Make ``get_space(name, ...)`` call ``factory``; a name is registered once."""
    if name in SPACES and SPACES[name] is not factory:
        raise ValueError(f"space '{name}' is registered twice")
    SPACES[name] = factory
    return factory


def space_options(name: str) -> dict[str, Any]:
    """``{option: default}`` of space ``name``."""
    _known(name)
    sig = inspect.signature(SPACES[name])
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _known(name: str) -> None:
    if not isinstance(name, str) or name not in SPACES:
        raise SpaceError(f"unknown space {name!r}; known spaces: {', '.join(SPACES)}")


def get_space(name: str, backbone: str = "small", input_shape: Sequence[int] = (1, 32, 32),
              num_classes: int = 10, **options: Any) -> Space:
    """The space ``name`` on ``backbone`` for this input shape and class count."""
    _known(name)
    allowed = space_options(name)
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise SpaceError(f"space '{name}' has no option {bad[0]!r}; its options: {', '.join(allowed) or 'none'}")
    if not isinstance(backbone, str) or backbone not in BACKBONES:
        raise SpaceError(f"unknown backbone {backbone!r}; known backbones: {', '.join(BACKBONES)}")
    return SPACES[name](backbone, tuple(input_shape), num_classes, **options)
