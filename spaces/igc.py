"""The ``igc`` space: per layer, the IGC split C = L x M and the primary kernel size.

Interleaved Group Convolutions (Zhang, Qi, Xiao, Wang, ICCV 2017): a primary K x K group conv
with L groups of M channels, an interleaving, and a secondary 1x1 group conv with M groups of L
channels. params = C_out * (C_in/L * K^2 + L), MACs = H'W' * params. The paper's point is that
at equal cost the split allows wider layers: search ``widths`` with it.

Per layer: ``kernel_size`` (the primary kernel) then ``igc_L`` over every L that divides both
C_in and C_out (then M = C_out / L is fixed by the shape). ``L = 1`` is a dense K x K conv then
a per-channel 1x1 scale (kept: a different module). ``L = C_in = C_out`` (M = 1) is exactly a
depthwise separable conv without BN + ReLU between its parts (IGC composes its two convs
linearly) and is emitted as ``dwsep`` with ``linear=True`` (the same network; the paper-form
``dwsep``, MobileNet's, has BN + ReLU there and is a different one).
"""

from __future__ import annotations

from typing import Sequence

from .block_choices import make_block_choices
from .space import BaselineRule, Family, LayerOp, LayerShape, Option, Space, common_divisors

__all__ = ["IGCFamily", "igc_space", "IGC_L_BASELINES", "IGC_M_BASELINES"]

IGC_L_BASELINES = (2, 4, 8)  # uniform L, M = C_out / L per layer: "igc-L4"
IGC_M_BASELINES = (2, 4, 8)  # uniform M, L = C_out / M per layer: "igc-M8"


def igc_op(shape: LayerShape, k: int, L: int) -> LayerOp:
    """The canonical layer for split ``L`` (the linear ``dwsep`` when it is one)."""
    M = shape.out_channels // L
    if M == 1 and L == shape.in_channels:
        return LayerOp.of("dwsep", k, linear=True)
    return LayerOp.of("igc", k, L=L, M=M)


class IGCFamily(Family):
    """IGC: ``kernel_size`` -> ``igc_L``."""

    name = "igc"

    def options(self, shape: LayerShape) -> list[Option]:
        return [Option((("kernel_size", k), ("igc_L", L)), igc_op(shape, k, L))
                for k in self.kernels for L in common_divisors(shape.in_channels, shape.out_channels)]

    def baselines(self) -> dict[str, BaselineRule]:
        k = 3 if 3 in self.kernels else self.kernels[0]
        rules: dict[str, BaselineRule] = {}
        for L in IGC_L_BASELINES:
            rules[f"igc-L{L}"] = _by_L(k, L)
        for M in IGC_M_BASELINES:
            rules[f"igc-M{M}"] = _by_M(k, M)
        return rules


def _by_L(k: int, L: int) -> BaselineRule:
    def rule(shape: LayerShape) -> LayerOp | None:
        ok = shape.in_channels % L == 0 and shape.out_channels % L == 0
        return igc_op(shape, k, L) if ok else None
    return rule


def _by_M(k: int, M: int) -> BaselineRule:
    def rule(shape: LayerShape) -> LayerOp | None:
        if shape.out_channels % M:
            return None
        L = shape.out_channels // M
        return igc_op(shape, k, L) if shape.in_channels % L == 0 else None
    return rule


def igc_space(backbone: str = "small", input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10, *,
              widths: Sequence[float] = (1.0,), kernels: Sequence[int] = (3, 5),
              block_choices: Sequence[str] = ("expand", "proj_groups")) -> Space:
    """The ``igc`` space (see the module docstring)."""
    return Space("igc", [IGCFamily(kernels)], backbone, input_shape, num_classes, widths,
                 block_choices=make_block_choices(block_choices))
