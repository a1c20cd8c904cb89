"""The ``decomp`` space: per layer, the kernel size and its decomposition.

Inception v3 (Szegedy et al., CVPR 2016, "Rethinking the Inception Architecture"): a K x K
conv as K x 1 then 1 x K (``asym``: params K*C_in*C_out + K*C_out^2 instead of K^2*C_in*C_out)
or as (K-1)/2 stacked 3x3 convs (``stack``: 5x5 -> two 3x3, 7x7 -> three; VGG's argument).

Per layer: ``kernel_size`` then ``decomp`` in none (dense K x K, the ``conv`` op) / asym /
stack. A 3x3 "stacked" is one 3x3, the dense conv, so at K = 3 stack is not offered (counted
once). Count per layer: 3 * len(kernels) - [3 in kernels].
"""

from __future__ import annotations

from typing import Sequence

from .block_choices import make_block_choices
from .space import BaselineRule, Family, LayerOp, LayerShape, Option, Space

__all__ = ["DecompFamily", "decomp_space", "MODES"]

MODES = ("none", "asym", "stack")


def decomp_op(k: int, mode: str) -> LayerOp:
    if mode == "none" or (mode == "stack" and k == 3):
        return LayerOp.of("conv", k)
    return LayerOp.of("decomp", k, mode=mode)


class DecompFamily(Family):
    """Kernel decomposition: ``kernel_size`` -> ``decomp``."""

    name = "decomp"

    def options(self, shape: LayerShape) -> list[Option]:
        out = []
        for k in self.kernels:
            for mode in MODES:
                if mode == "stack" and k == 3:
                    continue
                out.append(Option((("kernel_size", k), ("decomp", mode)), decomp_op(k, mode)))
        return out

    def baselines(self) -> dict[str, BaselineRule]:
        """Dense 3x3 (and 5x5), Inception v3's 3x3 -> 3x1 + 1x3 and 5x5 -> two 3x3."""
        rules: dict[str, BaselineRule] = {}
        if 3 in self.kernels:
            rules["dense"] = lambda s: LayerOp.of("conv", 3)
            rules["decomp-asym"] = lambda s: decomp_op(3, "asym")
        if 5 in self.kernels:
            rules["dense-k5"] = lambda s: LayerOp.of("conv", 5)
            rules["decomp-stack"] = lambda s: decomp_op(5, "stack")
        return rules


def decomp_space(backbone: str = "small", input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10, *,
                 widths: Sequence[float] = (1.0,), kernels: Sequence[int] = (3, 5, 7),
                 block_choices: Sequence[str] = ("expand",)) -> Space:
    """The ``decomp`` space (see the module docstring)."""
    return Space("decomp", [DecompFamily(kernels)], backbone, input_shape, num_classes, widths,
                 block_choices=make_block_choices(block_choices))
