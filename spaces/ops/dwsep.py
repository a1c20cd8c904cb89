"""Depthwise separable convolution (MobileNet, Howard et al., arXiv 2017; Xception, Chollet,
CVPR 2017).

A depthwise KxK conv (one filter per input channel, carrying the stride), then (the paper
form, MobileNet Fig. 3) BN + ReLU, then a pointwise 1x1 conv that mixes channels. The layer's
own BN + ReLU follow the op, so a ``dwsep`` layer is MobileNet's
3x3 dw -> BN -> ReLU -> 1x1 -> BN -> ReLU. ``linear=True`` leaves out the inner BN + ReLU
(Xception's separable conv, Sec. 4.7: no intermediate activation), one linear op.

params = C_in * K^2 + C_in * C_out (+ 2 C_in for the inner BN),
MACs = H' * W' * (C_in * K^2 + C_in * C_out).
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn

from .inner import fold_chain, norm_act
from .registry import register_op

__all__ = ["DepthwiseSeparable"]


@register_op("dwsep")
class DepthwiseSeparable(nn.Module):
    """Depthwise KxK (stride), BN + ReLU (unless ``linear``), pointwise 1x1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 *, linear: bool = False) -> None:
        super().__init__()
        self.linear = linear
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, stride, kernel_size // 2, groups=in_channels,
                      bias=False),
            *norm_act(in_channels, linear),
            nn.Conv2d(in_channels, out_channels, 1, bias=False))

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int,
              *, linear: bool = False) -> None:
        """Any positive widths work."""

    @property
    def depthwise(self) -> nn.Conv2d:
        return cast(nn.Conv2d, self.body[0])

    @property
    def pointwise(self) -> nn.Conv2d:
        return cast(nn.Conv2d, self.body[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: the inner BN folded into the depthwise conv, ``bn`` into the pointwise."""
        return fold_chain(self.body, bn)
