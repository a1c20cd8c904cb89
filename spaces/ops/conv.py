"""Dense KxK convolution, the reference every grouping design is measured against.

Cost (same padding, output H'xW'): params = C_out * C_in * K^2,
MACs = H' * W' * C_out * C_in * K^2.
"""

from __future__ import annotations

from torch import Tensor, nn

from .registry import register_op


@register_op("conv")
class DenseConv(nn.Module):
    """A plain dense KxK convolution without bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        """Any positive widths work."""

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))`` as one conv with bias (inference form, ``spaces.inference``)."""
        from ..fold import ConvKernel, PermutedOp, fold_conv_bn

        return PermutedOp(ConvKernel(fold_conv_bn(self.conv, bn)))
