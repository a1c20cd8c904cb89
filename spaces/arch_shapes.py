"""The shape walk of an ``Arch``: validates every layer and block and records each shape.

Spatial sizes follow same padding: a K x K layer with stride s maps H to ceil(H / s); ``max`` and
``avg`` pools (2x2) to floor(H / 2); ``max3`` (3x3, stride 2, padding 1) and the ``avgpool``
shortcut to ceil(H / 2). A kernel may reach at most one pixel of padding past the map on each
side (``kernel_size <= 2 * max(H, W) + 1``): wider kernels only multiply zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .ops.registry import OpConfigError, validate_op

if TYPE_CHECKING:
    from .arch import Arch, BlockSpec, LayerSpec

__all__ = ["Walk", "walk", "kernel_fits"]

Shape = tuple[int, int, int]


def kernel_fits(kernel_size: int, height: int, width: int) -> bool:
    """Whether a K x K same-padded kernel fits an H x W map (K <= 2 max(H, W) + 1)."""
    return kernel_size <= 2 * max(height, width) + 1


@dataclass
class Walk:
    """Shapes met on the way: entering each main-path layer, after the stem and each block, and
    every layer output (main path, branches, projections) for memory estimates."""

    layer_inputs: list[Shape] = field(default_factory=list)
    block_outputs: list[Shape] = field(default_factory=list)
    all_layers: list[tuple[Shape, int, int]] = field(default_factory=list)  # (input, out_channels, kernel)
    activations: int = 0


def _err(where: str, name: str, message: str) -> Exception:
    from .arch import ArchError

    return ArchError(f"{where}: field '{name}': {message}")


def _layer(spec: LayerSpec, shape: Shape, where: str, out: Walk, stem: bool = False) -> Shape:
    c, h, w = shape
    try:
        validate_op(spec.op, c, spec.out_channels, spec.kernel_size, spec.stride, **spec.p)
    except OpConfigError as err:
        raise _err(where, err.field, err.message) from None
    if not kernel_fits(spec.kernel_size, h, w):
        raise _err(where, "kernel_size", f"{spec.kernel_size} is wider than the {h}x{w} input map "
                   f"(at most {2 * max(h, w) + 1})")
    if spec.residual and stem:
        raise _err(where, "residual", "the stem cannot have a shortcut")
    h, w = math.ceil(h / spec.stride), math.ceil(w / spec.stride)
    out.all_layers.append((shape, spec.out_channels, spec.kernel_size))
    out.activations += spec.out_channels * h * w
    return _pooled((spec.out_channels, h, w), spec.pool, where)


def _pooled(shape: Shape, pool: str, where: str) -> Shape:
    """The shape after a layer's or a block's ``pool``."""
    c, h, w = shape
    if pool in ("max", "avg"):
        if h < 2 or w < 2:
            raise _err(where, "pool", f"feature map {h}x{w} is too small to pool")
        return c, h // 2, w // 2
    if pool == "max3":
        return c, math.ceil(h / 2), math.ceil(w / 2)
    return shape


def _stride_between(before: Shape, after: Shape) -> int | None:
    for s in (1, 2):
        if (math.ceil(before[1] / s), math.ceil(before[2] / s)) == after[1:]:
            return s
    return None


def _block(block: BlockSpec, shape: Shape, where: str, index0: int, out: Walk) -> Shape:
    c, h, w = shape
    main: Shape = shape
    if block.split:
        if block.shortcut != "identity" or block.combine != "concat":
            raise _err(where, "split", "a channel split needs shortcut 'identity' and combine 'concat'")
        if c % 2:
            raise _err(where, "split", f"{c} input channels do not split in halves")
        main = (c - c // 2, h, w)
    for li, layer in enumerate(block.layers):
        out.layer_inputs.append(main)
        main = _layer(layer, main, f"{where} layer {li} (layer {index0 + li}, {layer.op})", out)
    short: Shape | None = None
    if block.shortcut == "identity":
        short = (c // 2, h, w) if block.split else shape
    elif block.shortcut == "avgpool":
        short = (c, math.ceil(h / 2), math.ceil(w / 2))
    elif block.shortcut == "projection":
        s = _stride_between(shape, main)
        if s is None:
            raise _err(where, "shortcut", f"a projection cannot map {h}x{w} to {main[1]}x{main[2]}")
        op, params = ("group", {"groups": block.proj_groups}) if block.proj_groups > 1 else ("conv", {})
        try:
            validate_op(op, c, main[0], 1, s, **params)
        except OpConfigError as err:
            raise _err(where, "proj_groups", err.message) from None
        out.activations += main[0] * main[1] * main[2]
        out.all_layers.append((shape, main[0], 1))
        short = main
    elif block.shortcut == "branch":
        short = shape
        for li, layer in enumerate(block.branch):
            short = _layer(layer, short, f"{where} branch {li} ({layer.op})", out)
    elif block.proj_groups != 1:
        raise _err(where, "proj_groups", "only a projection shortcut has groups")
    if short is None:
        result = main
    elif block.combine == "add":
        if short != main:
            raise _err(where, "shortcut", f"{block.shortcut} gives {short}, the layers {main}: cannot add")
        result = main
    else:
        if short[1:] != main[1:]:
            raise _err(where, "shortcut", f"{block.shortcut} gives {short[1]}x{short[2]}, the layers "
                       f"{main[1]}x{main[2]}: cannot concatenate")
        result = (short[0] + main[0], main[1], main[2])
    if result[0] % block.shuffle:
        raise _err(where, "shuffle", f"{block.shuffle} groups do not divide {result[0]} channels")
    return _pooled(result, block.pool, where)


def walk(arch: Arch) -> Walk:
    """Validate ``arch`` and record its shapes; ``ArchError`` names stage, block, layer, field."""
    out = Walk()
    shape: Shape = arch.input_shape
    out.activations = shape[0] * shape[1] * shape[2]
    shape = _layer(arch.stem, shape, f"stem ({arch.stem.op})", out, stem=True)
    out.block_outputs.append(shape)
    index = 0
    for s, stage in enumerate(arch.stages):
        for bi, block in enumerate(stage):
            shape = _block(block, shape, f"stage {s} block {bi}", index, out)
            index += len(block.layers)
            out.block_outputs.append(shape)
    return out
