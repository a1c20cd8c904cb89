"""The operator registry and the one factory, ``make_op``.

Every operator family lives in its own module and registers its class here with
``@register_op("name")``. A registered class takes
``(in_channels, out_channels, kernel_size=3, stride=1, *, <params>)``; its keyword-only
parameters, with their annotations, are the op's parameter schema: ``make_op`` rejects an
unknown name, an unknown parameter (a typo is an error, never silently ignored) or a value of
the wrong type, then asks the class's ``check`` classmethod whether the shape is possible,
all before any tensor is allocated. ``validate_op`` runs the same checks without building,
which is how ``Arch`` validates a whole network cheaply.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar, get_type_hints

from torch import nn

__all__ = ["OPS", "OpConfigError", "register_op", "make_op", "validate_op", "op_param_schema"]

OPS: dict[str, type[nn.Module]] = {}

_M = TypeVar("_M", bound=type[nn.Module])


class OpConfigError(ValueError):
    """An op configuration that cannot be built; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def register_op(name: str) -> Callable[[_M], _M]:
    """Class decorator: make ``cls`` available as ``make_op(name, ...)``."""

    def decorate(cls: _M) -> _M:
        if name in OPS and OPS[name] is not cls:
            raise ValueError(f"op '{name}' is registered twice ({OPS[name].__name__}, {cls.__name__})")
        if not callable(getattr(cls, "check", None)):
            raise TypeError(f"op class {cls.__name__} needs a classmethod check(...)")
        OPS[name] = cls
        setattr(cls, "op_name", name)  # noqa: B010 - a class attribute the type of nn.Module lacks
        return cls

    return decorate


def op_param_schema(op: str) -> dict[str, tuple[type, Any]]:
    """``{param: (type, default)}`` for an op's keyword-only parameters."""
    cls = _lookup(op)
    hints = get_type_hints(cls.__init__)
    schema: dict[str, tuple[type, Any]] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            schema[p.name] = (hints.get(p.name, object), p.default)
    return schema


def _lookup(op: str) -> type[nn.Module]:
    if not isinstance(op, str) or op not in OPS:
        raise OpConfigError("op", f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
    return OPS[op]


def _check_type(op: str, name: str, value: Any, expected: type) -> None:
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is object:
        ok = True
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise OpConfigError(name, f"op '{op}' expects {expected.__name__}, got {value!r}")


def _positive_int(field: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise OpConfigError(field, f"must be a positive integer, got {value!r}")


def validate_op(
    op: str, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, **params: Any
) -> None:
    """Raise ``OpConfigError`` if ``make_op`` with these arguments would fail; build nothing."""
    cls = _lookup(op)
    _positive_int("in_channels", in_channels)
    _positive_int("out_channels", out_channels)
    _positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise OpConfigError("kernel_size", f"must be odd (same padding), got {kernel_size}")
    if stride not in (1, 2) or isinstance(stride, bool):
        raise OpConfigError("stride", f"must be 1 or 2, got {stride!r}")
    schema = op_param_schema(op)
    for name, value in params.items():
        if name not in schema:
            allowed = ", ".join(sorted(schema)) or "none"
            raise OpConfigError(name, f"unknown parameter for op '{op}'; its parameters: {allowed}")
        _check_type(op, name, value, schema[name][0])
    getattr(cls, "check")(in_channels, out_channels, kernel_size, stride, **params)  # noqa: B009


def make_op(
    op: str, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, **params: Any
) -> nn.Module:
    """Build the convolution part of a layer: no bias, no normalisation, no activation."""
    validate_op(op, in_channels, out_channels, kernel_size, stride, **params)
    return OPS[op](in_channels, out_channels, kernel_size, stride, **params)
