"""CondenseNet learned group convolution (Huang et al., CVPR 2018, arXiv:1711.09224).

A dense KxK weight (C_out, C_in, K, K) trains under a group-wise mask. Filter ``f`` belongs to
group ``f mod G`` (the paper's interleaved filter groups, so that the shuffle after the
condensed group conv puts every filter back in place). In the first half of training there
are ``C - 1`` condensing stages (stage ``s`` once ``progress >= s / (2 (C - 1))``, as in the
authors' schedule); at each stage every group drops the ``C_in / C`` of its still-connected
input channels whose weights in that group have the smallest L1 norm. After the last stage
each group keeps ``C_in / C`` inputs. The group-lasso term of the paper,
``lambda * sum_g sum_j ||W[group g, input j]||_2``, pushes whole (group, input) columns to
zero so that dropping them costs little.

``condense()`` returns ``IndexedGroupConv``: an index selection gathering each group's kept
inputs (G * C_in / C channels, an input may feed several groups), a real ``nn.Conv2d`` with
``groups=G``, and the channel shuffle the paper uses (G groups of C_out / G), which gives the
same outputs as the masked module.

Cost of the condensed op (output H' x W'), reported even before condensation:
params = C_out * (C_in / C) * K^2, MACs = H' * W' * C_out * (C_in / C) * K^2
(CondenseNet's learned 1x1: C_out * C_in / C).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LearnedOp
from .registry import OpConfigError, register_op

__all__ = ["CondenseConv", "IndexedGroupConv", "conv_cost"]


def conv_cost(out_channels: int, in_per_group: int, kernel_size: int, y: Tensor) -> int:
    """MACs of a group conv with this many inputs per filter, for output ``y`` (batch 1)."""
    return y.shape[-2] * y.shape[-1] * out_channels * in_per_group * kernel_size * kernel_size


class IndexedGroupConv(nn.Module):
    """Inference form of a learned grouping: ``y = conv(x[:, in_index])[:, out_index]``.

    ``in_index`` gathers (and may repeat) input channels so that group ``g`` of the real group
    conv sees its own inputs contiguously; ``out_index`` (``None`` for the identity) puts the
    filters back in their original order. Gathers cost no MACs; the conv is counted by formula.
    ``in_channels`` is the width of the input ``x`` (default ``len(in_index)``, a permutation):
    a gather that keeps the first k of more channels is a selection, not the identity.
    """

    in_index: Tensor
    out_index: Tensor

    def __init__(self, conv: nn.Conv2d, in_index: Tensor, out_index: Tensor | None,
                 in_channels: int | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.in_channels = len(in_index) if in_channels is None else int(in_channels)
        self.register_buffer("in_index", in_index.long().clone())
        if out_index is None:
            out_index = torch.arange(conv.out_channels)
        self.register_buffer("out_index", out_index.long().clone())
        self._refresh_identity()
        # the identity flags follow the indices, also when they come from a state dict
        self.register_load_state_dict_post_hook(lambda module, _keys: module._refresh_identity())

    def _refresh_identity(self) -> None:
        from ..fold import is_identity

        self._in_identity = (self.in_channels == self.conv.in_channels
                             and is_identity(self.in_index, self.conv.in_channels))
        self._out_identity = is_identity(self.out_index, self.conv.out_channels)

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: BN folded into the conv; the gather and the filter order stay as
        indices (``spaces.inference`` merges them with the neighbours' permutations)."""
        from ..fold import ConvKernel, PermutedOp, fold_conv_bn, inverse_permutation

        conv = fold_conv_bn(self.conv, bn, order=inverse_permutation(self.out_index))
        return PermutedOp(ConvKernel(conv), self.in_index, self.out_index, in_width=self.in_channels)

    def forward(self, x: Tensor) -> Tensor:
        if not self._in_identity:
            x = x.index_select(1, self.in_index)
        y = self.conv(x)
        if not self._out_identity:
            y = y.index_select(1, self.out_index)
        return y


@register_op("condense")
class CondenseConv(LearnedOp):
    """Learned group convolution with ``groups`` G and condensation factor ``condense_factor`` C."""

    mask: Tensor
    stage: Tensor

    lasso_lambda: float = 1e-5  # group-lasso weight: our default (class attribute, not searched)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 groups: int = 4, condense_factor: int = 4) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.groups, self.condense_factor = groups, condense_factor
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        # mask[g, j] = 1 while input j still feeds filter group g; a buffer, not a parameter
        self.register_buffer("mask", torch.ones(groups, in_channels))
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
              groups: int = 4, condense_factor: int = 4) -> None:
        """G must divide C_out (equal filter groups); C must divide C_in (equal kept inputs)."""
        if groups < 1 or out_channels % groups:
            raise OpConfigError("groups", f"must be a positive divisor of out_channels={out_channels}, "
                                          f"got {groups}")
        if condense_factor < 1 or in_channels % condense_factor:
            raise OpConfigError("condense_factor", f"must be a positive divisor of in_channels="
                                                   f"{in_channels}, got {condense_factor}")

    # -- structure ----------------------------------------------------------------------
    @property
    def kept_inputs(self) -> int:
        """Inputs per group after the last stage: C_in / C."""
        return self.in_channels // self.condense_factor

    @property
    def stages(self) -> int:
        return self.condense_factor - 1

    def full_mask(self, mask: Tensor | None = None) -> Tensor:
        """The (C_out, C_in) connection mask: filter f sees input j iff mask[f mod G, j]."""
        mask = self.mask if mask is None else mask
        return mask.repeat(self.out_channels // self.groups, 1)  # row f -> mask[f % G]

    def _column_norms(self) -> Tensor:
        """L1 norm of each (group, input) column of the masked weight, shape (G, C_in)."""
        w = (self.weight.detach() * self.full_mask()[:, :, None, None]).abs().sum((2, 3))
        return w.view(self.out_channels // self.groups, self.groups, self.in_channels).sum(0)

    def _drop_stage(self, mask: Tensor) -> Tensor:
        """Return ``mask`` with each group's C_in / C weakest connected inputs removed."""
        norms = self._column_norms()
        norms = norms.masked_fill(mask == 0, math.inf)  # dropped inputs stay dropped
        drop = norms.argsort(dim=1, stable=True)[:, : self.kept_inputs]
        mask = mask.clone()
        mask.scatter_(1, drop, 0.0)
        return mask

    def final_mask(self) -> Tensor:
        """The mask after all C - 1 stages (remaining stages dropped now by current norms)."""
        mask = self.mask
        for _ in range(int(self.stage), self.stages):
            mask = self._drop_stage(mask)
        return mask

    # -- LearnedOp hooks ---------------------------------------------------------------
    def schedule(self, progress: float) -> None:
        """Run every condensing stage due by ``progress`` (stage s at s / (2 (C - 1)))."""
        if self.stages == 0:
            return
        due = min(self.stages, int(math.floor(progress * 2 * self.stages + 1e-9)))
        while int(self.stage) < due:
            self.mask.copy_(self._drop_stage(self.mask))
            self.stage += 1

    def regularizer(self) -> Tensor | None:
        """Group lasso over (filter group, input channel) columns of the masked weight."""
        if self.lasso_lambda == 0 or self.stages == 0:
            return None
        w = (self.weight * self.full_mask()[:, :, None, None]).pow(2).sum((2, 3))
        w = w.view(self.out_channels // self.groups, self.groups, self.in_channels).sum(0)
        return self.lasso_lambda * w.clamp_min(1e-12).sqrt().sum()

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.full_mask()[:, :, None, None]
        return F.conv2d(x, w, None, self.stride, self.kernel_size // 2)

    def condense(self) -> IndexedGroupConv:
        """Index selection + real G-group conv + channel shuffle with this module's outputs."""
        g, per = self.groups, self.out_channels // self.groups
        mask = self.final_mask()
        kept = [torch.nonzero(mask[i]).flatten() for i in range(g)]
        in_index = torch.cat(kept)
        conv = nn.Conv2d(g * self.kept_inputs, self.out_channels, self.kernel_size, self.stride,
                         self.kernel_size // 2, groups=g, bias=False)
        # group conv output o' = i * per + k is filter f = k * G + i (group i, k-th member)
        filters = torch.arange(self.out_channels).view(per, g).t().reshape(-1)
        with torch.no_grad():
            w = self.weight.detach()
            conv.weight.copy_(torch.stack([w[filters[i * per:(i + 1) * per]][:, kept[i]] for i in range(g)])
                              .reshape(self.out_channels, self.kept_inputs, self.kernel_size, self.kernel_size))
        shuffle = torch.arange(self.out_channels).view(g, per).t().reshape(-1)  # ShuffleNet shuffle
        return IndexedGroupConv(conv.to(w.device), in_index.to(w.device), shuffle.to(w.device),
                                in_channels=self.in_channels)

    # -- cost protocol (evaluators.cost) ---------------------------------------------------
    def cost_params(self) -> int:
        return self.out_channels * self.kept_inputs * self.kernel_size ** 2

    def cost_macs(self, x: Tensor, y: Tensor) -> int:
        return conv_cost(self.out_channels, self.kept_inputs, self.kernel_size, y)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, s={self.stride}, "
                f"groups={self.groups}, condense_factor={self.condense_factor}, stage={int(self.stage)}")
