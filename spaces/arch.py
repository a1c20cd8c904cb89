"""Architectures as data: ``Arch``, ``BlockSpec``, ``LayerSpec``, ``HeadSpec``; JSON round trip.

An ``Arch`` (format version 2) is a whole network: input shape, class count, a stem layer,
``stages`` (each a sequence of blocks) and a head. A ``BlockSpec`` is a few layers (the main
path) with its own shortcut, how the two are combined, and what follows the combination:

- ``shortcut``: ``none``; ``identity``; ``projection`` (a 1x1 conv + BN carrying the block's
  stride, dense or with ``proj_groups`` groups as in the IGC paper's ImageNet nets); ``avgpool``
  (3x3 average pool, stride 2: ShuffleNet v1's stride-2 unit); ``branch`` (the layers in
  ``branch``: ShuffleNet v2's stride-2 unit).
- ``combine``: ``add`` (ResNet, MobileNetV2) or ``concat`` (shortcut channels first: ShuffleNet,
  DenseNet / CondenseNet dense connectivity, which is ``identity`` + ``concat``).
- ``split``: ShuffleNet v2's channel split: the identity shortcut takes the first half of the
  input channels, the main path the second half; combined by ``concat``.
- ``norm`` (``bn``/``none``) and ``act`` after the combination (``relu`` for ResNet, ``none`` for
  MobileNetV2's linear bottleneck; BN + ReLU on CondenseNet's last concatenation); ``shuffle``:
  groups of a channel shuffle after them (1 = none); ``pool``: a pool after all that (``avg``
  2x2: CondenseNet's transitions, which pool the whole concatenation).

A ``LayerSpec`` is one op from ``spaces.OPS`` with its parameters, out channels, kernel, stride,
its normalisation (``bn``/``none``) and activation (``relu``, ``relu6``, ``prelu``, ``none``),
post-activation (op -> norm -> act) or pre-activation (``preact``: norm -> act -> op, CondenseNet),
an optional one-layer shortcut (``residual``, format 1) and a pool after it (``max`` 2x2,
``max3`` 3x3 stride 2, ``avg`` 2x2). Expansion ratios are the widths of a block's layers.

Format 1 files (a flat ``layers`` list) load unchanged: each layer becomes a one-layer block.
``Arch(input_shape, num_classes, stem, layers, head)`` with a flat tuple of ``LayerSpec`` does the
same. Constructing an ``Arch`` validates it completely (``spaces.arch_shapes``), so one that exists
can be built; errors name the stage, block, layer and field. Loading never executes code: JSON only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .ops.registry import op_param_schema

if TYPE_CHECKING:
    from .arch_shapes import Walk

__all__ = ["Arch", "BlockSpec", "LayerSpec", "HeadSpec", "ArchError", "save_arch", "load_arch",
           "FORMAT_VERSION", "ACTS", "NORMS", "POOLS", "SHORTCUTS"]

FORMAT_VERSION = 2
POOLS = ("none", "max", "max3", "avg")
HEADS = ("gap", "gdc")
NORMS = ("bn", "none")
ACTS = ("relu", "relu6", "prelu", "none")
SHORTCUTS = ("none", "identity", "projection", "avgpool", "branch")
COMBINES = ("add", "concat")

ParamValue = int | float | bool | str


class ArchError(ValueError):
    """A malformed or impossible architecture; the message names the block, layer and field."""


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


def _one_of(where: str, name: str, value: Any, allowed: tuple[str, ...]) -> None:
    _require(where, name, value, str)
    if value not in allowed:
        raise ArchError(f"{where}: field '{name}' must be one of {allowed}, got {value!r}")


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``op`` -> norm -> act (or norm -> act -> op with ``preact``), then ``pool``.

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
    norm: str = "bn"
    act: str = "relu"
    preact: bool = False

    def __post_init__(self) -> None:
        where = "layer"
        _require(where, "op", self.op, str)
        for name in ("out_channels", "kernel_size", "stride"):
            _require(where, name, getattr(self, name), int)
        _require(where, "residual", self.residual, bool)
        _require(where, "preact", self.preact, bool)
        _one_of(where, "pool", self.pool, POOLS)
        _one_of(where, "norm", self.norm, NORMS)
        _one_of(where, "act", self.act, ACTS)
        object.__setattr__(self, "params", _freeze_params(self.params, where))

    @property
    def p(self) -> dict[str, ParamValue]:
        """The op parameters as a dict."""
        return dict(self.params)

    def with_params(self, **params: ParamValue) -> LayerSpec:
        """A copy with ``params`` replaced."""
        return self.replace(params=params)

    def replace(self, **changes: Any) -> LayerSpec:
        """A copy with some fields changed (``params`` as a dict)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return LayerSpec(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``norm``, ``act`` and ``preact`` only when not the defaults (format 1's layer)."""
        out = {f.name: dict(self.params) if f.name == "params" else getattr(self, f.name) for f in fields(self)}
        for name, default in (("norm", "bn"), ("act", "relu"), ("preact", False)):
            if out[name] == default:
                del out[name]
        return out


@dataclass(frozen=True)
class BlockSpec:
    """A block: main-path ``layers``, a shortcut, the combination and what follows it."""

    layers: tuple[LayerSpec, ...]
    shortcut: str = "none"
    combine: str = "add"
    split: bool = False
    act: str = "none"
    shuffle: int = 1
    proj_groups: int = 1
    branch: tuple[LayerSpec, ...] = ()
    norm: str = "none"
    pool: str = "none"

    def __post_init__(self) -> None:
        where = "block"
        for name in ("layers", "branch"):
            seq = getattr(self, name)
            if not isinstance(seq, (tuple, list)) or not all(isinstance(l, LayerSpec) for l in seq):
                raise ArchError(f"{where}: field '{name}' must be a sequence of LayerSpec")
            object.__setattr__(self, name, tuple(seq))
        if not self.layers:
            raise ArchError(f"{where}: field 'layers' must hold at least one layer")
        _one_of(where, "shortcut", self.shortcut, SHORTCUTS)
        _one_of(where, "combine", self.combine, COMBINES)
        _one_of(where, "act", self.act, ACTS)
        _one_of(where, "norm", self.norm, NORMS)
        _one_of(where, "pool", self.pool, POOLS)
        _require(where, "split", self.split, bool)
        for name in ("shuffle", "proj_groups"):
            _require(where, name, getattr(self, name), int)
            if getattr(self, name) < 1:
                raise ArchError(f"{where}: field '{name}' must be >= 1, got {getattr(self, name)}")
        if (self.shortcut == "branch") != bool(self.branch):
            raise ArchError(f"{where}: field 'branch' is used exactly when shortcut is 'branch'")

    def replace(self, **changes: Any) -> BlockSpec:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return BlockSpec(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``norm`` and ``pool`` only when used (files written before them stay equal)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["layers"] = [l.to_dict() for l in self.layers]
        out["branch"] = [l.to_dict() for l in self.branch]
        for name in ("norm", "pool"):
            if out[name] == "none":
                del out[name]
        return out


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
        _one_of("head", "kind", self.kind, HEADS)
        _require("head", "dropout", self.dropout, (int, float))
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ArchError(f"head: field 'dropout' must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dropout": self.dropout}


def _as_stages(body: Any) -> tuple[tuple[BlockSpec, ...], ...]:
    """Stages from a flat sequence of layers or blocks (one stage) or a sequence of stages."""
    if not isinstance(body, (tuple, list)):
        raise ArchError("arch: field 'stages' must be a sequence of stages (sequences of BlockSpec)")
    if all(isinstance(b, (LayerSpec, BlockSpec)) for b in body):
        body = (body,) if body else ()
    stages = []
    for s, stage in enumerate(body):
        if not isinstance(stage, (tuple, list)) or not stage:
            raise ArchError(f"stage {s}: must be a non-empty sequence of blocks")
        blocks = []
        for b in stage:
            if isinstance(b, LayerSpec):
                b = BlockSpec((b,))
            if not isinstance(b, BlockSpec):
                raise ArchError(f"stage {s}: a block must be a BlockSpec, got {type(b).__name__}")
            blocks.append(b)
        stages.append(tuple(blocks))
    return tuple(stages)


@dataclass(frozen=True)
class Arch:
    """A whole network as data. Construction validates it; see the module docstring."""

    input_shape: tuple[int, int, int]
    num_classes: int
    stem: LayerSpec
    stages: tuple[tuple[BlockSpec, ...], ...]
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
        object.__setattr__(self, "stages", _as_stages(self.stages))
        if not isinstance(self.head, HeadSpec):
            raise ArchError("arch: field 'head' must be a HeadSpec")
        from .arch_shapes import walk  # the shape walk validates every block and layer

        object.__setattr__(self, "_shape_walk", walk(self))

    @property
    def _walk(self) -> Walk:
        """The shape walk that validated this arch (``spaces.arch_shapes.walk``), kept from construction."""
        return self.__dict__["_shape_walk"]

    # -- views ------------------------------------------------------------------------
    @cached_property
    def blocks(self) -> tuple[BlockSpec, ...]:
        """Every block, stage after stage."""
        return tuple(b for stage in self.stages for b in stage)

    @cached_property
    def layers(self) -> tuple[LayerSpec, ...]:
        """Every main-path layer of every block, in order (the layers a space searches)."""
        return tuple(l for b in self.blocks for l in b.layers)

    def layer_positions(self) -> list[tuple[int, int, int]]:
        """``(stage, block within stage, layer within block)`` of each entry of ``layers``."""
        return [(s, bi, li) for s, stage in enumerate(self.stages) for bi, b in enumerate(stage)
                for li in range(len(b.layers))]

    def layer_inputs(self) -> list[tuple[int, int, int]]:
        """(C, H, W) entering each entry of ``layers``."""
        return list(self._walk.layer_inputs)

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) after the stem and after each block."""
        return list(self._walk.block_outputs)

    def in_channels(self, index: int) -> int:
        """Input channels of ``layers[index]``."""
        return self._walk.layer_inputs[index][0]

    def with_layers(self, layers: Sequence[LayerSpec]) -> Arch:
        """The same blocks with their main-path layers replaced by ``layers`` (in order)."""
        if len(layers) != len(self.layers):
            raise ArchError(f"arch: {len(layers)} layers given for {len(self.layers)} in the blocks")
        it = iter(layers)
        stages = tuple(tuple(b.replace(layers=tuple(next(it) for _ in b.layers)) for b in st)
                       for st in self.stages)
        return Arch(self.input_shape, self.num_classes, self.stem, stages, self.head)

    def replace_layer(self, index: int, layer: LayerSpec) -> Arch:
        layers = list(self.layers)
        layers[index] = layer
        return self.with_layers(layers)

    # -- JSON -------------------------------------------------------------------------
    def is_flat(self) -> bool:
        """Whether format 1 can hold this arch: every block one layer with nothing around it."""
        return all(b == BlockSpec(b.layers) and len(b.layers) == 1 for b in self.blocks) and len(self.stages) <= 1

    def to_dict(self) -> dict[str, Any]:
        """Format 1 (flat ``layers``) when ``is_flat``, so older readers keep working; else format 2."""
        if self.is_flat():
            return {"format": 1, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                    "stem": self.stem.to_dict(), "layers": [l.to_dict() for l in self.layers],
                    "head": self.head.to_dict()}
        return {
            "format": FORMAT_VERSION,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "stem": self.stem.to_dict(),
            "stages": [[b.to_dict() for b in stage] for stage in self.stages],
            "head": self.head.to_dict(),
        }

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: equal archs give equal text (keys sorted)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Arch:
        from .arch_json import arch_from_dict

        return arch_from_dict(data)

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchError(f"arch: not valid JSON ({err})") from None
        return cls.from_dict(data)


def save_arch(arch: Arch, path: str | Path) -> None:
    """Write ``arch`` as indented canonical JSON."""
    Path(path).write_text(arch.to_json(indent=2) + "\n")


def load_arch(path: str | Path) -> Arch:
    """Read an ``Arch`` from a JSON file (format 1 or 2); ``ArchError`` for anything wrong with it."""
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
