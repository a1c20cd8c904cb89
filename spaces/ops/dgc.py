"""DGC, groupable convolution (Zhang et al., "Differentiable Learning-to-Group Channels via
Groupable Convolutional Neural Networks", ICCV 2019, arXiv:1908.05867).

The (C_out, C_in) connection mask is a Kronecker product of K = log2(min(C_in, C_out)) binary
2x2 factors, ``U = U_1 (x) U_2 (x) ... (x) U_K (x) A``, each ``U_k = g_k * ones(2, 2) +
(1 - g_k) * I_2`` chosen by a gate ``g_k = [theta_k >= 0]`` (straight-through: the backward pass
uses sigmoid(theta_k)), and ``A = ones(C_out / 2^K, C_in / 2^K)`` a fixed dense factor when the
widths differ. Channel c's bit k is bit (K - k) of ``c // size(A)``; the mask entry is 1 iff
output and input agree on the bits of every identity factor. So with ``n`` identity factors the
op is a group conv with ``2^n`` groups after permuting channels by those bits; ``condense()``
returns exactly that (index reordering, real ``nn.Conv2d``, inverse filter permutation).

``groups`` is the *target* group count. Our decisions: the gates start at the standard
contiguous G-group conv (the first log2(G) factors identity, the others dense, |theta| = 0.1),
and the regulariser is the gate budget ``lambda * (n_identity - log2 G)^2`` on the
straight-through count of identity factors: zero on budget, it pulls the group count back
whenever the task loss flips a gate. Training thus learns *which* channel bits define the
groups (which interleaving), and the group count follows from the gates (it may end off
target if the task loss outweighs the budget). Both widths must be powers of two.

Cost of the realised op with G' = 2^n groups (output H' x W'): params = C_out * C_in / G' * K^2,
MACs = H' * W' * C_out * C_in / G' * K^2 (the current gates; gates are not inference params).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LearnedOp
from .condense import IndexedGroupConv, conv_cost
from .registry import OpConfigError, register_op

__all__ = ["DGC"]


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@register_op("dgc")
class DGC(LearnedOp):
    """Groupable convolution: the group structure is learned as Kronecker factors."""

    in_bits: Tensor
    out_bits: Tensor

    budget_lambda: float = 0.5  # weight of the gate-budget term (class attribute, not searched)
    gate_init: float = 0.1  # |theta| at init: small, so the task loss can flip gates

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 groups: int = 4) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        self.factors = min(in_channels, out_channels).bit_length() - 1  # K
        self.target_identity = groups.bit_length() - 1  # log2 G
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        init = torch.full((self.factors,), self.gate_init)
        init[: self.target_identity] = -self.gate_init  # identity factors first: contiguous groups
        self.gate_logits = nn.Parameter(init)
        self.register_buffer("in_bits", self._bits(in_channels), persistent=False)
        self.register_buffer("out_bits", self._bits(out_channels), persistent=False)

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
              groups: int = 4) -> None:
        """Widths powers of two; ``groups`` a power of two up to min(C_in, C_out)."""
        for field, width in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not _is_pow2(width):
                raise OpConfigError(field, f"dgc needs power-of-two widths (Kronecker 2x2 factors), "
                                           f"got {width}")
        if not _is_pow2(groups) or groups > min(in_channels, out_channels):
            raise OpConfigError("groups", f"must be a power of two <= {min(in_channels, out_channels)}, "
                                          f"got {groups}")

    def _bits(self, channels: int) -> Tensor:
        """(K, channels) bool: bit of factor k (k = 0 most significant) of each channel."""
        low = torch.arange(channels) // (channels >> self.factors)
        shifts = torch.arange(self.factors - 1, -1, -1)
        return ((low[None, :] >> shifts[:, None]) & 1).bool()

    # -- gates and mask ---------------------------------------------------------------------
    def gates(self) -> Tensor:
        """Straight-through gates: forward exactly 0 (identity) / 1 (dense), backward sigmoid."""
        soft = torch.sigmoid(self.gate_logits)
        hard = (self.gate_logits >= 0).to(soft.dtype)
        return hard + (soft - soft.detach())

    def identity_factors(self) -> list[int]:
        """Indices k of the factors that are currently identity."""
        return [k for k, v in enumerate(self.gate_logits.detach().tolist()) if v < 0]

    @property
    def current_groups(self) -> int:
        """Group count of the realised conv: 2 ** (number of identity factors)."""
        return 2 ** len(self.identity_factors())

    def connection_mask(self) -> Tensor:
        """(C_out, C_in) mask: prod_k (g_k + (1 - g_k) [bit_k(out) == bit_k(in)])."""
        g = self.gates()
        mask = torch.ones(self.out_channels, self.in_channels, device=g.device, dtype=g.dtype)
        for k in range(self.factors):
            same = (self.out_bits[k][:, None] == self.in_bits[k][None, :]).to(g.dtype)
            mask = mask * (g[k] + (1 - g[k]) * same)
        return mask

    # -- LearnedOp hooks -----------------------------------------------------------------------
    def schedule(self, progress: float) -> None:
        """Nothing to do: gates are hard in every forward; condense() reads them."""

    def regularizer(self) -> Tensor | None:
        """Gate budget: lambda * (straight-through identity count - log2(groups))^2."""
        if self.factors == 0 or self.budget_lambda == 0:
            return None
        n_identity = (1 - self.gates()).sum()
        return self.budget_lambda * (n_identity - self.target_identity) ** 2

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.connection_mask()[:, :, None, None]
        return F.conv2d(x, w, None, self.stride, self.kernel_size // 2)

    def _group_ids(self, bits: Tensor, ident: list[int]) -> Tensor:
        gid = torch.zeros(bits.shape[1], dtype=torch.long)
        for k in ident:
            gid = gid * 2 + bits[k].cpu().long()
        return gid

    def condense(self) -> IndexedGroupConv:
        """Channel permutation by identity bits + real 2^n-group conv + inverse permutation."""
        ident = self.identity_factors()
        g = 2 ** len(ident)
        in_order = torch.argsort(self._group_ids(self.in_bits, ident), stable=True)
        out_order = torch.argsort(self._group_ids(self.out_bits, ident), stable=True)
        pi, po = self.in_channels // g, self.out_channels // g
        w = self.weight.detach().cpu()
        blocks = [w[out_order[k * po:(k + 1) * po]][:, in_order[k * pi:(k + 1) * pi]] for k in range(g)]
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                         self.kernel_size // 2, groups=g, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.cat(blocks))
        dev = self.weight.device
        return IndexedGroupConv(conv.to(dev), in_order.to(dev), torch.argsort(out_order).to(dev))

    # -- cost protocol (evaluators.cost) ---------------------------------------------------
    def cost_params(self) -> int:
        return self.out_channels * (self.in_channels // self.current_groups) * self.kernel_size ** 2

    def cost_macs(self, x: Tensor, y: Tensor) -> int:
        return conv_cost(self.out_channels, self.in_channels // self.current_groups, self.kernel_size, y)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, s={self.stride}, "
                f"groups={self.groups} (now {self.current_groups})")
