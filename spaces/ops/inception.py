"""Multi-branch mixed kernels (Inception: GoogLeNet, Szegedy et al., CVPR 2015, with the 5x5
factorised as two 3x3 as in Inception v3, Szegedy et al., CVPR 2016) and the bottleneck block
(ResNet, He et al., CVPR 2016; grouped middle conv as in ResNeXt, Xie et al., CVPR 2017).

``inception``: branches 1x1 | 3x3 | 3x3 -> 3x3 (the 5x5) | [3x3 average pool -> 1x1]
(``pool_branch``), each reading the input and carrying the stride, concatenated in that order.
``out_channels`` splits as evenly as it goes: n = 4 (3 without the pool branch) branches of
``out // n`` channels, the first ``out % n`` branches one more; it must be at least n. The
layer's ``kernel_size`` must be 3 (the branches fix their kernels). With b_i the widths:
params = C_in*b1 + 9*C_in*b2 + 9*C_in*b3 + 9*b3^2 + C_in*b4,
MACs = H' * W' * params (pooling counts no MACs, as in the papers). GoogLeNet/Inception v3
have 1x1 reductions before the 3x3s and BN + ReLU after every conv; this op is the mixed-kernel
conv part alone (the builder adds BN + ReLU after the concatenation). The pool is average
pooling (Inception v3), zero padding counted, so the whole op is linear.

``bottleneck``: 1x1 reduce C_in -> m = C_out / reduction, K x K m -> m with ``groups`` (carries
the stride), 1x1 expand m -> C_out. params = C_in*m + m*m*K^2/g + m*C_out,
MACs = H*W*C_in*m + H'*W'*(m*m*K^2/g + m*C_out). ResNet has BN + ReLU after each conv; here the
three convs compose linearly (the builder adds BN + ReLU and the shortcut after the op).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .registry import OpConfigError, register_op

__all__ = ["Inception", "Bottleneck", "branch_widths"]


def branch_widths(out_channels: int, pool_branch: bool) -> list[int]:
    """Widths of the 1x1, 3x3, 5x5 (two 3x3) and pool branches that sum to ``out_channels``."""
    n = 4 if pool_branch else 3
    return [out_channels // n + (1 if i < out_channels % n else 0) for i in range(n)]


@register_op("inception")
class Inception(nn.Module):
    """1x1 | 3x3 | two 3x3 | avgpool + 1x1, concatenated."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        *, pool_branch: bool = True,
    ) -> None:
        super().__init__()
        b = branch_widths(out_channels, pool_branch)
        self.widths = b
        self.b1 = nn.Conv2d(in_channels, b[0], 1, stride, bias=False)
        self.b3 = nn.Conv2d(in_channels, b[1], 3, stride, 1, bias=False)
        self.b5 = nn.Sequential(nn.Conv2d(in_channels, b[2], 3, stride, 1, bias=False),
                                nn.Conv2d(b[2], b[2], 3, 1, 1, bias=False))
        self.pool = (nn.Sequential(nn.AvgPool2d(3, stride, 1), nn.Conv2d(in_channels, b[3], 1, bias=False))
                     if pool_branch else None)

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int,
              *, pool_branch: bool = True) -> None:
        """Every branch needs at least one channel; the branches fix their own kernels."""
        if kernel_size != 3:
            raise OpConfigError("kernel_size", f"inception fixes its kernels (1x1, 3x3, 5x5 as two 3x3), "
                                               f"so kernel_size must be 3, got {kernel_size}")
        n = 4 if pool_branch else 3
        if out_channels < n:
            raise OpConfigError("out_channels", f"inception splits out_channels over {n} branches, "
                                                f"so it needs at least {n}, got {out_channels}")

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: each branch's last conv takes its slice of the BN."""
        from ..fold import bn_affine, fold_conv_affine

        scale, shift = bn_affine(bn)
        out = copy.deepcopy(self).requires_grad_(False)
        bounds = [0]
        for w in self.widths:
            bounds.append(bounds[-1] + w)
        lasts = [(out, "b1"), (out, "b3"), (out.b5, "1")] + ([(out.pool, "1")] if out.pool is not None else [])
        for i, (parent, name) in enumerate(lasts):
            a, b = bounds[i], bounds[i + 1]
            setattr(parent, name, fold_conv_affine(getattr(parent, name), scale[a:b], shift[a:b]))
        return out

    def forward(self, x: Tensor) -> Tensor:
        ys = [self.b1(x), self.b3(x), self.b5(x)]
        if self.pool is not None:
            ys.append(self.pool(x))
        return torch.cat(ys, 1)


@register_op("bottleneck")
class Bottleneck(nn.Module):
    """1x1 reduce -> K x K (groups, stride) -> 1x1 expand."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        *, reduction: int = 4, groups: int = 1,
    ) -> None:
        super().__init__()
        mid = out_channels // reduction
        self.reduce = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.conv = nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.expand = nn.Conv2d(mid, out_channels, 1, bias=False)

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int,
              *, reduction: int = 4, groups: int = 1) -> None:
        """``reduction`` divides ``out_channels``; ``groups`` divides the reduced width."""
        if reduction < 1:
            raise OpConfigError("reduction", f"must be >= 1, got {reduction}")
        if out_channels % reduction:
            ok = [r for r in range(1, out_channels + 1) if out_channels % r == 0]
            raise OpConfigError("reduction", f"{reduction} does not divide out_channels={out_channels}; "
                                             f"reductions that work: {ok}")
        mid = out_channels // reduction
        if groups < 1:
            raise OpConfigError("groups", f"must be >= 1, got {groups}")
        if mid % groups:
            ok = [g for g in range(1, mid + 1) if mid % g == 0]
            raise OpConfigError("groups", f"{groups} does not divide the reduced width "
                                          f"{out_channels}/{reduction}={mid}; groups that work: {ok}")

    def forward(self, x: Tensor) -> Tensor:
        return self.expand(self.conv(self.reduce(x)))

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: reduce, grouped conv, then the expand conv with BN folded in."""
        from ..fold import fold_conv_bn

        keep = [copy.deepcopy(c).requires_grad_(False) for c in (self.reduce, self.conv)]
        return nn.Sequential(*keep, fold_conv_bn(self.expand, bn))
