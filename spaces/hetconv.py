"""The ``hetconv`` space: per layer, HetConv's part P and the kernel size K.

HetConv (Singh, Verma, Rai, Namboodiri, CVPR 2019): each filter has C_in/P of its input
channels at K x K and the rest at 1x1, the pattern shifted from filter to filter.
params = C_out * (C_in/P * K^2 + C_in - C_in/P), MACs = H'W' * params.

Per layer: ``kernel_size`` then ``hetconv_P`` over the common divisors of C_in and C_out (the op
needs P to divide both), from 1 (the dense K x K conv, emitted as ``conv``) up to gcd(C_in,
C_out). Count per layer: len(kernels) * d, d the number of common divisors.
"""

from __future__ import annotations

from typing import Sequence

from .block_choices import make_block_choices
from .space import BaselineRule, Family, LayerOp, LayerShape, Option, Space, common_divisors

__all__ = ["HetConvFamily", "hetconv_space", "HETCONV_BASELINES"]

HETCONV_BASELINES = (2, 4, 8, 16)  # the HetConv paper's uniform P on VGG-16


def hetconv_op(k: int, P: int) -> LayerOp:
    return LayerOp.of("conv", k) if P == 1 else LayerOp.of("hetconv", k, P=P)


class HetConvFamily(Family):
    """HetConv: ``kernel_size`` -> ``hetconv_P``."""

    name = "hetconv"

    def options(self, shape: LayerShape) -> list[Option]:
        return [Option((("kernel_size", k), ("hetconv_P", P)), hetconv_op(k, P))
                for k in self.kernels for P in common_divisors(shape.in_channels, shape.out_channels)
                if k > 1 or P == 1]  # at 1x1 every P is the dense conv

    def baselines(self) -> dict[str, BaselineRule]:
        k = 3 if 3 in self.kernels else self.kernels[0]
        rules: dict[str, BaselineRule] = {"dense": lambda s: LayerOp.of("conv", k)}
        for P in HETCONV_BASELINES:
            rules[f"hetconv-P{P}"] = _uniform(k, P)
        return rules


def _uniform(k: int, P: int) -> BaselineRule:
    def rule(shape: LayerShape) -> LayerOp | None:
        return None if shape.in_channels % P or shape.out_channels % P else hetconv_op(k, P)
    return rule


def hetconv_space(backbone: str = "small", input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10, *,
                  widths: Sequence[float] = (1.0,), kernels: Sequence[int] = (3, 5),
                  block_choices: Sequence[str] = ("expand",)) -> Space:
    """The ``hetconv`` space (see the module docstring)."""
    return Space("hetconv", [HetConvFamily(kernels)], backbone, input_shape, num_classes, widths,
                 block_choices=make_block_choices(block_choices))
