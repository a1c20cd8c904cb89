"""FLGC, fully learnable group convolution (Wang et al., CVPR 2019, arXiv:1904.00346).

Two learnable assignment matrices, ``S`` (C_in x G, input channel -> group) and ``T``
(C_out x G, filter -> group), are relaxed row-wise with a softmax. The forward pass uses
their hard one-hot form with straight-through gradients (the softmax's), so the weight the
conv sees is always ``W * (T_hard S_hard^T)``: filter ``o`` is connected to input ``i`` iff
they are in the same group.

Balancing (our decision; the paper lets group sizes differ, a real group conv cannot): the
hard assignment is *balanced*, every group holds exactly C_in / G inputs and C_out / G
filters. Rows are assigned greedily in order of confidence: all (row, group) pairs sorted by
softmax probability, highest first (ties by index), each row takes the first group that still
has room. The training-time forward, the eval forward and ``condense()`` all use this same
function of the logits, so the hardened module equals the relaxed one at its hard assignment.

``condense()`` returns an index reordering (inputs sorted by group), a real ``nn.Conv2d``
with ``groups=G`` and the permutation that puts the filters back in their original order.

Cost of the hardened op (output H' x W'): params = C_out * (C_in / G) * K^2,
MACs = H' * W' * C_out * (C_in / G) * K^2. The assignment logits are not inference parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LearnedOp
from .condense import IndexedGroupConv, conv_cost
from .registry import OpConfigError, register_op

__all__ = ["FLGC", "balanced_assignment"]


def balanced_assignment(scores: Tensor, groups: int) -> Tensor:
    """Row -> group with exactly ``rows / groups`` rows per group, greedily by score.

    ``scores`` is (rows, groups); pairs are visited in order of decreasing score (stable, so
    ties go to the lower flat index) and a row takes its group if the group has room.
    """
    rows = scores.shape[0]
    room = [rows // groups] * groups
    assign = [-1] * rows
    left = rows
    order = torch.argsort(scores.detach().flatten().cpu(), descending=True, stable=True)
    for flat in order.tolist():
        r, g = divmod(flat, groups)
        if assign[r] < 0 and room[g] > 0:
            assign[r] = g
            room[g] -= 1
            left -= 1
            if left == 0:
                break
    return torch.tensor(assign, dtype=torch.long, device=scores.device)


@register_op("flgc")
class FLGC(LearnedOp):
    """Group conv whose channel-to-group and filter-to-group assignments are learned."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 groups: int = 4) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        # small random logits: the initial hard assignment is a random balanced grouping
        self.in_logits = nn.Parameter(0.01 * torch.randn(in_channels, groups))
        self.out_logits = nn.Parameter(0.01 * torch.randn(out_channels, groups))
        self._cache: dict[str, tuple[tuple[int, int], Tensor]] = {}

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
              groups: int = 4) -> None:
        """G must divide both C_in and C_out (balanced groups)."""
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise OpConfigError("groups", f"must divide in_channels={in_channels} and "
                                          f"out_channels={out_channels}, got {groups}")

    # -- assignments --------------------------------------------------------------------
    def _hard(self, name: str) -> Tensor:
        """Balanced hard assignment of ``in_logits``/``out_logits``, cached per logits version."""
        logits: Tensor = getattr(self, name)
        try:
            key: tuple[int, int] | None = (logits._version, logits.data_ptr())
        except RuntimeError:  # inference tensors have no version counter: do not cache
            key = None
        hit = self._cache.get(name)
        if key is None or hit is None or hit[0] != key:
            hit = (key or (-1, -1), balanced_assignment(torch.softmax(logits.detach(), dim=1), self.groups))
            if key is not None:
                self._cache[name] = hit
        return hit[1]

    def assignments(self) -> tuple[Tensor, Tensor]:
        """(group of each input channel, group of each filter), both balanced."""
        return self._hard("in_logits"), self._hard("out_logits")

    def _straight_through(self, name: str) -> Tensor:
        soft = torch.softmax(getattr(self, name), dim=1)
        hard = F.one_hot(self._hard(name), self.groups).to(soft.dtype)
        return hard + (soft - soft.detach())  # forward: exactly one-hot; backward: softmax's

    def connection_mask(self) -> Tensor:
        """(C_out, C_in) 0/1 mask (straight-through): 1 where filter and input share a group."""
        return self._straight_through("out_logits") @ self._straight_through("in_logits").t()

    # -- LearnedOp hooks -------------------------------------------------------------------
    def schedule(self, progress: float) -> None:
        """Nothing to do: the forward always runs at the hard assignment, condense() freezes it."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.connection_mask()[:, :, None, None]
        return F.conv2d(x, w, None, self.stride, self.kernel_size // 2)

    def condense(self) -> IndexedGroupConv:
        """Index reordering + real G-group conv + inverse filter permutation."""
        g = self.groups
        gi, go = (a.cpu() for a in self.assignments())
        in_order = torch.argsort(gi, stable=True)
        out_order = torch.argsort(go, stable=True)
        pi, po = self.in_channels // g, self.out_channels // g
        w = self.weight.detach().cpu()
        blocks = [w[out_order[k * po:(k + 1) * po]][:, in_order[k * pi:(k + 1) * pi]] for k in range(g)]
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                         self.kernel_size // 2, groups=g, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.cat(blocks))
        out_index = torch.argsort(out_order)  # filter o sits at position out_index[o]
        dev = self.weight.device
        return IndexedGroupConv(conv.to(dev), in_order.to(dev), out_index.to(dev))

    # -- cost protocol (evaluators.cost) ---------------------------------------------------
    def cost_params(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * self.kernel_size ** 2

    def cost_macs(self, x: Tensor, y: Tensor) -> int:
        return conv_cost(self.out_channels, self.in_channels // self.groups, self.kernel_size, y)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, s={self.stride}, "
                f"groups={self.groups}")
