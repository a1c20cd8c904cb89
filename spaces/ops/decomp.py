"""Kernel decomposition: asymmetric (Inception v3, Szegedy et al., CVPR 2016, "Rethinking the
Inception Architecture", Sec. 3.2; Jaderberg et al., BMVC 2014) or stacked 3x3 (VGG, Simonyan &
Zisserman, ICLR 2015; Inception v3, Sec. 3.1).

``mode="asym"``: K x K -> a K x 1 conv (C_in -> C_out, vertical stride) then a 1 x K conv
(C_out -> C_out, horizontal stride); the stride is split across the two.
params = K * C_in * C_out + K * C_out^2,
MACs = K * C_in * C_out * H1 * W + K * C_out^2 * H' * W'  (H1 = H' rows, full width W).

``mode="stack"``: K x K -> (K - 1) / 2 stacked 3x3 convs with the same receptive field
(5x5 -> two, 7x7 -> three, 3x3 -> one); the first maps C_in -> C_out and carries the stride,
the others C_out -> C_out. params = 9 * (C_in * C_out + (n - 1) * C_out^2),
MACs = H' * W' * params.

Between the factors the paper form has BN + ReLU (Inception v3 Sec. 3.1, Fig. 2: ReLU between
the factors beat a linear composition; BN after every conv; VGG has ReLU after every conv),
2 C_out parameters per inner BN, no MACs. ``linear=True`` composes them linearly; then asym is
the dense K x K conv whose kernel is sum_m B[o, m, :] (outer) A[m, i, :] (a rank-C_out sum of
outer products, Jaderberg et al.'s low-rank form). K = 1 has nothing to decompose.
"""

from __future__ import annotations

from torch import Tensor, nn

from .inner import fold_chain, norm_act
from .registry import OpConfigError, register_op

__all__ = ["Decomposed"]

MODES = ("asym", "stack")


@register_op("decomp")
class Decomposed(nn.Module):
    """K x K as K x 1 then 1 x K (``asym``), or as stacked 3x3 convs (``stack``); BN + ReLU
    between the factors unless ``linear``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *, mode: str,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.mode, self.linear = mode, linear
        k, p = kernel_size, kernel_size // 2
        if mode == "asym":
            convs = [nn.Conv2d(in_channels, out_channels, (k, 1), (stride, 1), (p, 0), bias=False),
                     nn.Conv2d(out_channels, out_channels, (1, k), (1, stride), (0, p), bias=False)]
        else:
            convs = [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3,
                               stride if i == 0 else 1, 1, bias=False) for i in range((k - 1) // 2)]
        body: list[nn.Module] = [convs[0]]
        for c in convs[1:]:
            body += [*norm_act(out_channels, linear), c]
        self.body = nn.Sequential(*body)

    @classmethod
    def check(
        cls, in_channels: int, out_channels: int, kernel_size: int, stride: int, *, mode: str | None = None,
        linear: bool = False,
    ) -> None:
        """``mode`` is "asym" or "stack"; ``kernel_size`` at least 3."""
        if mode not in MODES:
            raise OpConfigError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
        if kernel_size < 3:
            raise OpConfigError("kernel_size", f"decomp needs kernel_size >= 3 (odd), got {kernel_size}; "
                                               "a 1x1 conv has nothing to decompose")

    @property
    def factors(self) -> list[nn.Conv2d]:
        """The factor convolutions, in order."""
        return [m for m in self.body if isinstance(m, nn.Conv2d)]

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: inner BNs folded into their factors, ``bn`` into the last one."""
        return fold_chain(self.body, bn)
