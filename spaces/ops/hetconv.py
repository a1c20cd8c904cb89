"""HetConv: heterogeneous kernel-based convolution (Singh et al., CVPR 2019).

Part ``P``: every filter has K x K kernels on 1/P of its input channels and 1x1 kernels on the
rest, in the paper's shifted pattern: filter ``j`` has its K x K kernels on the input channels
``c`` with ``c = j (mod P)`` (filter j+1 is filter j shifted by one channel).
params = C_out * C_in * (K^2 / P + 1 - 1/P), MACs = H' * W' * params (output H' x W').

Fast form (never a masked dense K x K conv): the filters fall into P classes ``r = j mod P``
that share their K x K input channels, so after one input permutation (the channels
``r, r+P, r+2P, ...`` made contiguous, block ``r``) the K x K part is a group conv with P
groups; the 1x1 part is a dense 1x1 over the same permuted input whose weight, in these
coordinates, is zero on the P diagonal blocks (the channels the K x K part already covers).
Both write class-major output, and one output permutation restores filter order. The weight
permutations and the zero blocks are applied to the (small) weights on each forward (cached
while gradients are off, i.e. at inference).

Parameters are stored in the paper's coordinates: ``kxk.weight[j, a]`` is filter ``j``'s K x K
kernel on input channel ``a * P + j mod P``; ``pw.weight[j, c]`` its 1x1 weight on channel
``c`` (the entries with ``c = j mod P`` are never used). ``kxk``/``pw`` are ``nn.Conv2d``
containers for those weights only (the model builder initialises them as convs); the op never
calls them as modules, and reports the paper's figures through ``cost_params``/``cost_macs``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import OpConfigError, register_op
from .shuffle import _tracing, channel_shuffle, pointwise, shuffle_permutation

__all__ = ["HetConv"]


@register_op("hetconv")
class HetConv(nn.Module):
    """HetConv with part ``P`` (``P = 1`` is the dense K x K conv)."""

    rows: Tensor
    cols: Tensor
    keep: Tensor

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *, P: int
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.P = kernel_size, stride, P
        self.kxk = nn.Conv2d(in_channels, out_channels, kernel_size, groups=P, bias=False)
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False) if P > 1 else None
        rows = torch.tensor(shuffle_permutation(out_channels, out_channels // P))
        cols = torch.tensor(shuffle_permutation(in_channels, in_channels // P))
        cls_out = torch.arange(out_channels) // (out_channels // P)
        cls_in = torch.arange(in_channels) // (in_channels // P)
        self.register_buffer("rows", rows, persistent=False)  # class-major row -> filter j
        self.register_buffer("cols", cols, persistent=False)  # permuted column -> channel c
        keep = (cls_out[:, None] != cls_in[None, :]).float()[:, :, None, None]
        self.register_buffer("keep", keep, persistent=False)  # 0 on the K x K-covered blocks
        self._cache: tuple[tuple | None, tuple[Tensor, Tensor]] | None = None

    @classmethod
    def check(
        cls, in_channels: int, out_channels: int, kernel_size: int, stride: int, *, P: int | None = None
    ) -> None:
        """``P`` must divide both widths (P classes of filters over P strided channel sets)."""
        if P is None:
            raise OpConfigError("P", "hetconv needs its part P (1/P of each filter's inputs at KxK)")
        if P < 1:
            raise OpConfigError("P", f"must be >= 1, got {P}")
        for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if c % P:
                ok = [d for d in range(1, min(in_channels, out_channels) + 1)
                      if in_channels % d == 0 and out_channels % d == 0]
                raise OpConfigError("P", f"{P} does not divide {name}={c}; parts that divide both "
                                         f"{in_channels} and {out_channels}: {ok}")

    def cost_params(self) -> int:
        """C_out * C_in * (K^2 / P + 1 - 1/P): only the entries the pattern uses."""
        cin, cout, k, p = self.in_channels, self.out_channels, self.kernel_size, self.P
        return cout * (cin // p) * k * k + cout * (cin - cin // p)

    def cost_macs(self, x: Tensor, y: Tensor) -> int:
        return self.cost_params() * y.shape[-2] * y.shape[-1]

    def forward(self, x: Tensor) -> Tensor:
        k, s, p = self.kernel_size, self.stride, self.P
        if p == 1:
            return F.conv2d(x, self.kxk.weight, None, s, k // 2)
        xp = channel_shuffle(x, self.in_channels // p)  # block r = channels r, r+P, ...
        w_kxk, w_pw = self._fast_weights()
        y = F.conv2d(xp, w_kxk, None, s, k // 2, 1, p)
        y = y.add_(pointwise(xp, w_pw, s))  # class-major: row r * C_out/P + i is filter i*P + r
        return channel_shuffle(y, p)

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(self(x))`` in class-major coordinates (``spaces.fold.HetKernel``), the input and
        output permutations left as indices for ``spaces.inference`` to cancel or absorb."""
        from ..fold import ConvKernel, HetKernel, PermutedOp, bn_affine, fold_conv_affine, inverse_permutation

        scale, shift = bn_affine(bn)
        k, s, p = self.kernel_size, self.stride, self.P
        if p == 1:
            conv = nn.Conv2d(self.in_channels, self.out_channels, k, s, k // 2, bias=False)
            conv.weight = self.kxk.weight
            return PermutedOp(ConvKernel(fold_conv_affine(conv, scale, shift)))
        with torch.no_grad():
            w_kxk, w_pw = self._class_major()
            rs = scale[self.rows].to(w_kxk.dtype).view(-1, 1, 1, 1)
            kernel = HetKernel(w_kxk * rs, w_pw * rs, shift[self.rows].to(w_kxk.dtype), p, s)
        return PermutedOp(kernel, self.cols, inverse_permutation(self.rows))

    def _class_major(self) -> tuple[Tensor, Tensor]:
        assert self.pw is not None, "P > 1: the net has its 1x1 part"
        w_kxk = self.kxk.weight.index_select(0, self.rows)
        w_pw = self.pw.weight.index_select(0, self.rows).index_select(1, self.cols) * self.keep
        return w_kxk, w_pw

    def _fast_weights(self) -> tuple[Tensor, Tensor]:
        """The weights in class-major / permuted coordinates; cached while gradients are off."""
        assert self.pw is not None, "P > 1: the net has its 1x1 part"
        w = (self.kxk.weight, self.pw.weight)
        cache = not torch.is_grad_enabled() and not _tracing() and not any(t.is_inference() for t in w)
        # inference tensors (built under torch.inference_mode) have no version counter: no cache
        key = (w[0]._version, w[1]._version, w[0].data_ptr(), w[1].data_ptr(), w[0].dtype) if cache else None
        if cache and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        w_kxk, w_pw = self._class_major()
        self._cache = (key, (w_kxk, w_pw)) if cache else None
        return w_kxk, w_pw

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"P={self.P}")
