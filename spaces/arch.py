"""Architectures as data: ``Arch`` and ``LayerSpec`` frozen dataclasses, JSON round-trip.

An ``Arch`` is a whole network: input shape, class count, a stem layer, a tuple of layers
(each an op name from ``spaces.OPS`` with its parameters, out channels, kernel size,
stride, an optional identity/projection shortcut and an optional 2x2 max-pool after it) and a
head. Constructing one validates it completely, so an ``Arch`` that exists can be built.
Loading never executes code: JSON only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .ops.registry import OpConfigError, op_param_schema, validate_op

__all__ = ["Arch", "LayerSpec", "HeadSpec", "ArchError", "save_arch", "load_arch", "FORMAT_VERSION"]

FORMAT_VERSION = 1
POOLS = ("none", "max")
HEADS = ("gap", "gdc")

ParamValue = int | float | bool | str


class ArchError(ValueError):
    """A malformed or impossible architecture; the message names the layer and the field."""


def _freeze_params(params: Mapping[str, Any] | tuple, where: str) -> tuple[tuple[str, ParamValue], ...]:
    if isinstance(params, tuple):
        params = dict(params)
    if not isinstance(params, Mapping):
        raise ArchError(f"{where}: field 'params' must be a mapping, got {type(params).__name__}")
    for k, v in params.items():
        if not isinstance(k, str):
            raise ArchError(f"{where}: parameter names must be strings, got {k!r}")
        if not isinstance(v, (int, float, bool, str)):
            raise ArchError(f"{where}: parameter '{k}' must be a number, bool or string, got {v!r}")
    return tuple(sorted(params.items()))


def _require(where: str, name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    bad_bool = isinstance(value, bool) and kind in (int, float, (int, float))
    if bad_bool or not isinstance(value, kind):
        kname = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ArchError(f"{where}: field '{name}' must be {kname}, got {value!r}")


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``op`` -> BatchNorm -> ReLU, plus an optional shortcut and max-pool.

    ``params`` is stored as a sorted tuple of ``(name, value)`` pairs so that the spec is
    hashable; pass a dict and read it back with ``layer.p``.
    """

    op: str
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    params: tuple[tuple[str, ParamValue], ...] = ()
    residual: bool = False
    pool: str = "none"

    def __post_init__(self) -> None:
        where = "layer"
        _require(where, "op", self.op, str)
        _require(where, "out_channels", self.out_channels, int)
        _require(where, "kernel_size", self.kernel_size, int)
        _require(where, "stride", self.stride, int)
        _require(where, "residual", self.residual, bool)
        _require(where, "pool", self.pool, str)
        if self.pool not in POOLS:
            raise ArchError(f"{where}: field 'pool' must be one of {POOLS}, got {self.pool!r}")
        object.__setattr__(self, "params", _freeze_params(self.params, where))

    @property
    def p(self) -> dict[str, ParamValue]:
        """The op parameters as a dict."""
        return dict(self.params)

    def with_params(self, **params: ParamValue) -> LayerSpec:
        """A copy with ``params`` replaced."""
        return LayerSpec(self.op, self.out_channels, self.kernel_size, self.stride, params,
                         self.residual, self.pool)

    def replace(self, **changes: Any) -> LayerSpec:
        """A copy with some fields changed (``params`` as a dict)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return LayerSpec(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "params": dict(self.params),
            "residual": self.residual,
            "pool": self.pool,
        }


@dataclass(frozen=True)
class HeadSpec:
    """Classifier head.

    ``kind="gap"``: global average pooling then a linear classifier.
    ``kind="gdc"``: global depthwise convolution (MobileFaceNet, Chen et al. 2018): a
    depthwise conv whose kernel covers the whole final feature map (H'xW'), then BatchNorm
    and the linear classifier. Its cost: params = C * H' * W', MACs = C * H' * W'.
    ``dropout`` is applied before the classifier during training.
    """

    kind: str = "gap"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _require("head", "kind", self.kind, str)
        _require("head", "dropout", self.dropout, (int, float))
        if self.kind not in HEADS:
            raise ArchError(f"head: field 'kind' must be one of {HEADS}, got {self.kind!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ArchError(f"head: field 'dropout' must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dropout": self.dropout}


@dataclass(frozen=True)
class Arch:
    """A whole network as data. Construction validates it; see the module docstring."""

    input_shape: tuple[int, int, int]
    num_classes: int
    stem: LayerSpec
    layers: tuple[LayerSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)

    def __post_init__(self) -> None:
        shape = self.input_shape
        if not isinstance(shape, (tuple, list)) or len(shape) != 3:
            raise ArchError(f"arch: field 'input_shape' must be (C, H, W), got {shape!r}")
        for v in shape:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ArchError(f"arch: field 'input_shape' must hold positive integers, got {shape!r}")
        object.__setattr__(self, "input_shape", tuple(shape))
        _require("arch", "num_classes", self.num_classes, int)
        if self.num_classes < 2:
            raise ArchError(f"arch: field 'num_classes' must be at least 2, got {self.num_classes}")
        if not isinstance(self.stem, LayerSpec):
            raise ArchError("arch: field 'stem' must be a LayerSpec")
        if not isinstance(self.layers, (tuple, list)) or not all(isinstance(l, LayerSpec) for l in self.layers):
            raise ArchError("arch: field 'layers' must be a sequence of LayerSpec")
        object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.head, HeadSpec):
            raise ArchError("arch: field 'head' must be a HeadSpec")
        self._validate()

    # -- validation -----------------------------------------------------------------
    def _validate(self) -> None:
        c, h, w = self.input_shape
        for index, layer in enumerate((self.stem, *self.layers)):
            where = "stem" if index == 0 else f"layer {index - 1} ({layer.op})"
            try:
                validate_op(layer.op, c, layer.out_channels, layer.kernel_size, layer.stride, **layer.p)
            except OpConfigError as err:
                raise ArchError(f"{where}: field '{err.field}': {err.message}") from None
            if layer.residual and index == 0:
                raise ArchError("stem: field 'residual': the stem cannot have a shortcut")
            h, w = math.ceil(h / layer.stride), math.ceil(w / layer.stride)
            if layer.pool == "max":
                if h < 2 or w < 2:
                    raise ArchError(f"{where}: field 'pool': feature map {h}x{w} is too small to pool")
                h, w = h // 2, w // 2
            c = layer.out_channels

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) after the stem and after each layer."""
        c, h, w = self.input_shape
        shapes = []
        for layer in (self.stem, *self.layers):
            h, w = math.ceil(h / layer.stride), math.ceil(w / layer.stride)
            if layer.pool == "max":
                h, w = h // 2, w // 2
            c = layer.out_channels
            shapes.append((c, h, w))
        return shapes

    def in_channels(self, index: int) -> int:
        """Input channels of ``layers[index]``."""
        return self.stem.out_channels if index == 0 else self.layers[index - 1].out_channels

    def replace_layer(self, index: int, layer: LayerSpec) -> Arch:
        layers = list(self.layers)
        layers[index] = layer
        return Arch(self.input_shape, self.num_classes, self.stem, tuple(layers), self.head)

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "stem": self.stem.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
            "head": self.head.to_dict(),
        }

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: equal archs give equal text (keys sorted)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Arch:
        if not isinstance(data, dict):
            raise ArchError(f"arch: expected a JSON object, got {type(data).__name__}")
        fmt = data.get("format", FORMAT_VERSION)
        if fmt != FORMAT_VERSION:
            raise ArchError(f"arch: field 'format': version {fmt!r} is not supported (expected {FORMAT_VERSION})")
        allowed = {"format", "input_shape", "num_classes", "stem", "layers", "head"}
        _no_unknown("arch", data, allowed)
        for key in ("input_shape", "num_classes", "stem", "layers"):
            if key not in data:
                raise ArchError(f"arch: missing field '{key}'")
        if not isinstance(data["layers"], list):
            raise ArchError("arch: field 'layers' must be a list")
        stem = _layer_from_dict(data["stem"], "stem")
        layers = tuple(_layer_from_dict(d, f"layer {i}") for i, d in enumerate(data["layers"]))
        head_data = data.get("head", {})
        if not isinstance(head_data, dict):
            raise ArchError("head: expected a JSON object")
        _no_unknown("head", head_data, {"kind", "dropout"})
        head = HeadSpec(**head_data)
        shape = data["input_shape"]
        if not isinstance(shape, list):
            raise ArchError(f"arch: field 'input_shape' must be a list [C, H, W], got {shape!r}")
        return cls(tuple(shape), data["num_classes"], stem, layers, head)

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchError(f"arch: not valid JSON ({err})") from None
        return cls.from_dict(data)


def _no_unknown(where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ArchError(f"{where}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")


def _layer_from_dict(data: Any, where: str) -> LayerSpec:
    if not isinstance(data, dict):
        raise ArchError(f"{where}: expected a JSON object, got {type(data).__name__}")
    _no_unknown(where, data, {f.name for f in fields(LayerSpec)})
    for key in ("op", "out_channels"):
        if key not in data:
            raise ArchError(f"{where}: missing field '{key}'")
    try:
        return LayerSpec(**data)
    except ArchError as err:
        raise ArchError(str(err).replace("layer:", f"{where}:", 1)) from None


def save_arch(arch: Arch, path: str | Path) -> None:
    """Write ``arch`` as indented canonical JSON."""
    Path(path).write_text(arch.to_json(indent=2) + "\n")


def load_arch(path: str | Path) -> Arch:
    """Read an ``Arch`` from a JSON file; ``ArchError`` for anything wrong with it."""
    p = Path(path)
    if not p.is_file():
        raise ArchError(f"arch file not found: {p}")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ArchError(f"cannot read arch file {p}: {err}") from None
    return Arch.from_json(text)


# re-exported for callers that want the schema of an op when writing configs
param_schema = op_param_schema
