"""Group convolution (AlexNet, Krizhevsky et al., NIPS 2012), optionally followed by a channel
shuffle (ShuffleNet, Zhang et al., CVPR 2018).

With ``g`` groups each output channel sees ``C_in / g`` input channels:
params = C_out * (C_in / g) * K^2, MACs = H' * W' * C_out * (C_in / g) * K^2
(H' x W' the output size). The shuffle (``shuffle=True``) transposes the output channels as a
``g x (C_out / g)`` matrix so that the next grouped layer mixes information across groups; it
costs no params and no MACs, and with ``g = 1`` it is the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import OpConfigError, register_op
from .shuffle import ChannelShuffle, shuffle_permutation

__all__ = ["GroupConv"]


@register_op("group")
class GroupConv(nn.Module):
    """KxK group conv with ``groups`` groups, then an optional channel shuffle."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        *, groups: int = 1, shuffle: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                              groups=groups, bias=False)
        self.shuffle = ChannelShuffle(groups) if shuffle and groups > 1 else None

    @classmethod
    def check(cls, in_channels: int, out_channels: int, kernel_size: int, stride: int,
              *, groups: int = 1, shuffle: bool = False) -> None:
        """``groups`` must be positive and divide both widths."""
        if groups < 1:
            raise OpConfigError("groups", f"must be >= 1, got {groups}")
        for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if c % groups:
                ok = [d for d in range(1, c + 1) if in_channels % d == 0 and out_channels % d == 0]
                raise OpConfigError(
                    "groups", f"{groups} does not divide {name}={c}; groups that divide both "
                    f"{in_channels} and {out_channels}: {ok}")

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return self.shuffle(y) if self.shuffle is not None else y

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))``: the conv with BN folded in, the shuffle left as an output index
        (``spaces.inference`` moves it into a neighbour's weights where the groups allow)."""
        from ..fold import ConvKernel, PermutedOp, fold_conv_bn, inverse_permutation

        if self.shuffle is None:
            return PermutedOp(ConvKernel(fold_conv_bn(self.conv, bn)))
        perm = torch.tensor(shuffle_permutation(self.conv.out_channels, self.shuffle.groups))
        conv = fold_conv_bn(self.conv, bn, order=inverse_permutation(perm))
        return PermutedOp(ConvKernel(conv), out_index=perm.to(conv.weight.device))
