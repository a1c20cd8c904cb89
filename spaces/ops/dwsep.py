"""Depthwise separable convolution (Xception, Chollet, CVPR 2017; MobileNet, Howard et al.,
arXiv 2017).

A depthwise KxK conv (one filter per input channel, carrying the stride) then a pointwise 1x1
conv that mixes channels: params = C_in * K^2 + C_in * C_out,
MACs = H' * W' * (C_in * K^2 + C_in * C_out). MobileNet puts BN + ReLU between the two
convs; this op is the conv part alone (the builder adds BN + ReLU after the op only).
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from .registry import register_op

__all__ = ["DepthwiseSeparable"]


@register_op("dwsep")
class DepthwiseSeparable(nn.Module):
    """Depthwise KxK (stride) then pointwise 1x1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride, kernel_size // 2,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        """Any positive widths work."""

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: depthwise, then the pointwise conv with BN folded in."""
        from ..fold import fold_conv_bn

        return nn.Sequential(copy.deepcopy(self.depthwise).requires_grad_(False), fold_conv_bn(self.pointwise, bn))
