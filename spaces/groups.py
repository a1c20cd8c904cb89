"""The ``groups`` space: per layer, the number of groups and whether a channel shuffle follows.

Group convolution (AlexNet, Krizhevsky et al., NIPS 2012; ResNeXt, Xie et al., CVPR 2017) with
``g`` groups costs params = C_out * C_in/g * K^2 and MACs = H'W' * C_out * C_in/g * K^2; the
ShuffleNet channel shuffle (Zhang et al., CVPR 2018) after it moves data only.

Per layer: ``groups`` in the common divisors of C_in and C_out (1 = dense ... depthwise when
C_in = C_out), then ``shuffle`` (only where it moves channels: 1 < g < C_out; with g = 1 or
g = C_out the shuffle is the identity, so those are offered once, without it), and
``kernel_size`` when several kernels are given. ``g = 1`` is emitted as the ``conv`` op (the
same network). Count per layer and kernel: 1 + 2 * (d - 1) - [g = C_out divides C_in], d the
number of common divisors. A shuffle before a dense layer or global pooling is a different
module with the same function class; it is counted as distinct.
"""

from __future__ import annotations

from typing import Sequence

from .block_choices import make_block_choices
from .space import BaselineRule, Family, LayerOp, LayerShape, Option, Space, common_divisors

__all__ = ["GroupFamily", "groups_space", "GROUP_BASELINES"]

GROUP_BASELINES = (2, 4, 8)


def _group_op(shape: LayerShape, k: int, g: int, shuffle: bool) -> LayerOp:
    if g == 1:
        return LayerOp.of("conv", k)
    return LayerOp.of("group", k, groups=g, shuffle=shuffle)


class GroupFamily(Family):
    """Group conv: ``kernel_size`` -> ``groups`` -> ``shuffle``."""

    name = "group"

    def options(self, shape: LayerShape) -> list[Option]:
        out = []
        for k in self.kernels:
            for g in common_divisors(shape.in_channels, shape.out_channels):
                for shuffle in ((False, True) if 1 < g < shape.out_channels else (False,)):
                    layer = _group_op(shape, k, g, shuffle)
                    out.append(Option((("kernel_size", k), ("groups", g), ("shuffle", shuffle)), layer))
        return out

    def baselines(self) -> dict[str, BaselineRule]:
        k = 3 if 3 in self.kernels else self.kernels[0]
        rules: dict[str, BaselineRule] = {"dense": lambda s: LayerOp.of("conv", k)}
        for g in GROUP_BASELINES:
            for shuffle in (False, True):
                rules[f"group-g{g}" + ("-shuffle" if shuffle else "")] = _uniform(k, g, shuffle)
        return rules


def _uniform(k: int, g: int, shuffle: bool) -> BaselineRule:
    def rule(shape: LayerShape) -> LayerOp | None:
        if shape.in_channels % g or shape.out_channels % g:
            return None
        return _group_op(shape, k, g, shuffle and g < shape.out_channels)
    return rule


def groups_space(backbone: str = "small", input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10, *,
                 widths: Sequence[float] = (1.0,), kernels: Sequence[int] = (3,),
                 block_choices: Sequence[str] = ("expand", "proj_groups", "groups")) -> Space:
    """The ``groups`` space (see the module docstring)."""
    return Space("groups", [GroupFamily(kernels)], backbone, input_shape, num_classes, widths,
                 block_choices=make_block_choices(block_choices))
