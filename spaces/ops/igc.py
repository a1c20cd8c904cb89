"""Interleaved group convolution, IGC (Zhang, Qi, Xiao, Wang, ICCV 2017).

With ``L`` primary partitions of ``M`` channels: a primary K x K group conv with L groups
(M output channels each, carrying the stride), an interleaving permutation that puts the m-th
channel of every primary partition into secondary partition m, a secondary 1x1 group conv with
M groups of L channels, and the permutation back (secondary partition m's i-th output goes to
channel ``i * M + m``, the inverse of the interleaving when the widths are equal).

Widths: ``L * M`` is the op's width and must equal ``out_channels`` (the paper's case is
``in_channels = out_channels = L * M``). When ``in_channels`` differs, only the primary conv
changes: it maps ``in_channels -> L * M`` with L groups, so ``L`` must also divide
``in_channels``; the secondary conv keeps the width ``L * M -> out_channels``.
Degenerate cases as in the paper: ``L = 1`` is a dense K x K conv followed by a per-channel 1x1
scale (M groups of one channel); ``M = 1`` is a (channel-multiplier) depthwise K x K conv then
a dense 1x1, Xception-like.

params = L*M * (C_in / L) * K^2 + C_out * L  (= C * (M K^2 + L) when C_in = C_out = C = L M),
MACs = H' * W' * params. The paper puts BN + ReLU after each conv of the block; this op is the
conv part alone, so the composition is linear (the builder adds BN + ReLU after the op).

Fast form: the secondary conv and both permutations are one contraction of the primary
output seen as (N, L, M, H, W) with the weight seen as (M, C_out / M, L) (NCHW input), or a
channel shuffle, a oneDNN grouped 1x1 and a shuffle back (channels_last input).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .registry import OpConfigError, register_op
from .shuffle import channel_shuffle, pointwise

__all__ = ["IGC"]


def _factor_pairs(c: int, in_channels: int) -> list[tuple[int, int]]:
    return [(l, c // l) for l in range(1, c + 1) if c % l == 0 and in_channels % l == 0]


@register_op("igc")
class IGC(nn.Module):
    """Primary K x K group conv (L groups of M) -> interleave -> 1x1 group conv (M groups of L) -> back."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *, L: int, M: int
    ) -> None:
        super().__init__()
        self.L, self.M = L, M
        self.primary = nn.Conv2d(in_channels, L * M, kernel_size, stride, kernel_size // 2, groups=L, bias=False)
        self.secondary = nn.Conv2d(L * M, out_channels, 1, groups=M, bias=False)

    @classmethod
    def check(
        cls, in_channels: int, out_channels: int, kernel_size: int, stride: int,
        *, L: int | None = None, M: int | None = None,
    ) -> None:
        """``L * M == out_channels`` and ``L`` divides ``in_channels``."""
        if L is None or M is None:
            raise OpConfigError("L" if L is None else "M",
                                "igc needs both L (primary partitions) and M (channels per partition)")
        for name, v in (("L", L), ("M", M)):
            if v < 1:
                raise OpConfigError(name, f"must be >= 1, got {v}")
        pairs = ", ".join(f"L={l} M={m}" for l, m in _factor_pairs(out_channels, in_channels))
        if L * M != out_channels:
            raise OpConfigError("M", f"L*M = {L}*{M} = {L * M} must equal out_channels={out_channels}; "
                                     f"pairs that work: {pairs}")
        if in_channels % L:
            raise OpConfigError("L", f"{L} primary groups do not divide in_channels={in_channels}; "
                                     f"pairs that work: {pairs}")

    def cost_params(self) -> int:
        return self.primary.weight.numel() + self.secondary.weight.numel()

    def cost_macs(self, x: Tensor, y: Tensor) -> int:
        return self.cost_params() * y.shape[-2] * y.shape[-1]

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))`` as ``spaces.fold.IGCKernel``: BN folded into the secondary conv."""
        from ..fold import IGCKernel, PermutedOp, bn_affine

        scale, shift = bn_affine(bn)
        L, M = self.L, self.M
        cout = self.secondary.out_channels
        w2 = self.secondary.weight.detach().view(M, cout // M, L)
        s2 = scale.view(cout // M, M).t().to(w2.dtype)  # logical channel j M + m -> [m, j]
        primary = copy.deepcopy(self.primary).requires_grad_(False)
        return PermutedOp(IGCKernel(primary, w2 * s2[:, :, None], shift.to(w2.dtype), L, M))

    def forward(self, x: Tensor) -> Tensor:
        y = self.primary(x)
        n, _, h, w = y.shape
        L, M = self.L, self.M
        cout = self.secondary.out_channels
        if y.is_contiguous():
            w2 = self.secondary.weight.view(M, cout // M, L)
            return torch.einsum("nlmhw,mjl->njmhw", y.view(n, L, M, h, w), w2).reshape(n, cout, h, w)
        y = pointwise(channel_shuffle(y, L), self.secondary.weight, 1, M)
        return channel_shuffle(y, M)
