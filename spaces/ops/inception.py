"""Multi-branch mixed kernels (Inception: GoogLeNet, Szegedy et al., CVPR 2015, Fig. 2b; with the
5x5 factorised as two 3x3, Inception v3, Szegedy et al., CVPR 2016, Fig. 5) and the bottleneck
block (ResNet, He et al., CVPR 2016, Fig. 5; grouped middle conv as in ResNeXt, Xie et al.,
CVPR 2017).

``inception``: four branches, each reading the input and carrying the stride, concatenated in
this order: 1x1 | 1x1 reduce -> 3x3 | 1x1 reduce -> 3x3 -> 3x3 (the 5x5) | 3x3 average pool ->
1x1 projection (``pool_branch``; Inception v3's pool, GoogLeNet's is max). ``out_channels``
splits as evenly as it goes: n = 4 (3 without the pool branch) branches of ``out // n``
channels, the first ``out % n`` one more; it must be at least n. A reduction has
r_i = max(1, b_i // ``reduction``) channels and stride 1 (the stride is on the 3x3, as in
Inception v3's grid reduction, Fig. 10); ``reduction=0`` leaves the reductions out. The
paper form has BN + ReLU after every conv; the layer's BN + ReLU after the concatenation are
those of each branch's last conv, and the op puts them after every other conv (the
reductions, the first 3x3 of the 5x5). ``linear=True`` leaves out the inner ones. The layer's
``kernel_size`` must be 3 (the branches fix their kernels). With b_i the widths, r3, r5 the
reductions (r = C_in without reductions, where the 1x1 is not there):
params = C_in*b1 + [C_in*r3] + 9*r3*b3 + [C_in*r5] + 9*r5*b5 + 9*b5^2 + C_in*b4
(+ 2 (r3 + r5 + b5) for the inner BNs), MACs = H*W*C_in*(r3 + r5) + H'*W'*(the other terms);
pooling counts no MACs, as in the papers.

``bottleneck``: 1x1 reduce C_in -> m = C_out / reduction, K x K m -> m with ``groups`` (carries
the stride), 1x1 expand m -> C_out, BN + ReLU after the first two (ResNet Fig. 5, BN after
every conv, Sec. 3.4; ``linear=True``: none, a linear op). The layer's BN (+ shortcut, ReLU)
follow the expand conv. params = C_in*m + m*m*K^2/g + m*C_out (+ 4 m),
MACs = H*W*C_in*m + H'*W'*(m*m*K^2/g + m*C_out).
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, nn

from .inner import fold_chain, norm_act
from .registry import OpConfigError, register_op

__all__ = ["Inception", "Bottleneck", "branch_widths"]


def branch_widths(out_channels: int, pool_branch: bool) -> list[int]:
    """Widths of the 1x1, 3x3, 5x5 (two 3x3) and pool branches that sum to ``out_channels``."""
    n = 4 if pool_branch else 3
    return [out_channels // n + (1 if i < out_channels % n else 0) for i in range(n)]


def _reduced(in_channels: int, width: int, reduction: int, linear: bool) -> tuple[list[nn.Module], int]:
    """The 1x1 reduction in front of a branch (and its BN + ReLU), and the width after it."""
    if reduction == 0:
        return [], in_channels
    r = max(1, width // reduction)
    return [nn.Conv2d(in_channels, r, 1, bias=False), *norm_act(r, linear)], r


@register_op("inception")
class Inception(nn.Module):
    """1x1 | reduce + 3x3 | reduce + two 3x3 | avgpool + 1x1, concatenated."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        *, pool_branch: bool = True, reduction: int = 2, linear: bool = False,
    ) -> None:
        super().__init__()
        b = branch_widths(out_channels, pool_branch)
        self.widths = b
        self.linear = linear
        self.b1 = nn.Sequential(nn.Conv2d(in_channels, b[0], 1, stride, bias=False))
        head, c = _reduced(in_channels, b[1], reduction, linear)
        self.b3 = nn.Sequential(*head, nn.Conv2d(c, b[1], 3, stride, 1, bias=False))
        head, c = _reduced(in_channels, b[2], reduction, linear)
        self.b5 = nn.Sequential(*head, nn.Conv2d(c, b[2], 3, stride, 1, bias=False), *norm_act(b[2], linear),
                                nn.Conv2d(b[2], b[2], 3, 1, 1, bias=False))
        self.pool = (nn.Sequential(nn.AvgPool2d(3, stride, 1), nn.Conv2d(in_channels, b[3], 1, bias=False))
                     if pool_branch else None)

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int,
              *, pool_branch: bool = True, reduction: int = 2, linear: bool = False) -> None:
        """Every branch needs at least one channel; the branches fix their own kernels."""
        if kernel_size != 3:
            raise OpConfigError("kernel_size", f"inception fixes its kernels (1x1, 3x3, 5x5 as two 3x3), "
                                               f"so kernel_size must be 3, got {kernel_size}")
        n = 4 if pool_branch else 3
        if out_channels < n:
            raise OpConfigError("out_channels", f"inception splits out_channels over {n} branches, "
                                                f"so it needs at least {n}, got {out_channels}")
        if reduction < 0:
            raise OpConfigError("reduction", f"must be >= 0 (0: no 1x1 reductions), got {reduction}")

    def branches(self) -> list[nn.Sequential]:
        return [self.b1, self.b3, self.b5] + ([self.pool] if self.pool is not None else [])

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: inner BNs folded into their convs; each branch's last conv takes its
        slice of ``bn``."""
        from ..fold import bn_affine, fold_conv_affine

        scale, shift = bn_affine(bn)
        out = copy.deepcopy(self).requires_grad_(False)
        a = 0
        for name, w in zip(("b1", "b3", "b5", "pool"), self.widths):
            chain = fold_chain(getattr(self, name))
            last = cast(nn.Conv2d, chain[-1])  # every branch ends in a conv
            chain[-1] = fold_conv_affine(last, scale[a:a + w], shift[a:a + w])
            setattr(out, name, chain)
            a += w
        return out

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches()], 1)


@register_op("bottleneck")
class Bottleneck(nn.Module):
    """1x1 reduce -> K x K (groups, stride) -> 1x1 expand, BN + ReLU between unless ``linear``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        *, reduction: int = 4, groups: int = 1, linear: bool = False,
    ) -> None:
        super().__init__()
        mid = out_channels // reduction
        self.linear = linear
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), *norm_act(mid, linear),
            nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            *norm_act(mid, linear),
            nn.Conv2d(mid, out_channels, 1, bias=False))

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int,
              *, reduction: int = 4, groups: int = 1, linear: bool = False) -> None:
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

    @property
    def convs(self) -> list[nn.Conv2d]:
        """reduce, K x K, expand."""
        return [m for m in self.body if isinstance(m, nn.Conv2d)]

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: inner BNs folded into the reduce and K x K convs, ``bn`` into the expand."""
        return fold_chain(self.body, bn)
