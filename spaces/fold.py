"""Inference kernels with BatchNorm folded in, and the channel permutations around them.

BatchNorm in eval mode is per-channel affine, ``bn(z)_c = s_c z_c + t_c`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s`` (Ioffe & Szegedy, ICML 2015); after a
linear op ``z = W x`` it folds into the last linear layer: ``W' = s W`` (row-wise), bias ``t``.

``PermutedOp`` is the unit that ``spaces.inference`` rearranges: ``y = kernel(x[:, in_index])
[:, out_index]``. A kernel computes in the order its fast form wants (e.g. HetConv class-major,
Singh et al., CVPR 2019); the two indices are what is left of the channel permutations. Between
two ``PermutedOp`` with only per-channel modules (ReLU, max-pool) in between, the two indices
compose into one, which a kernel may absorb into its weights (``permute_out``: reorder output
filters and bias; ``permute_in``: reorder input weight columns) when the permutation keeps each
of its groups whole (``in_blocks`` / ``out_blocks``: the number of contiguous channel blocks
the kernel's grouped convolutions need intact; 1 for a dense conv, any permutation).

Exporting (ONNX): onnxruntime's CPU convolutions run in its blocked NCHWc layout, whose block
is 16 channels where the CPU has AVX-512F and 8 on other x86-64 (MLAS' ``NchwcBlockSize``); a
grouped conv whose groups are narrower than a block leaves that layout and is slow (measured on
an earlier machine, where 16 was the better width: C=32 at 112x112, 4 groups of 8 take 2.0 ms,
2 groups of 16 with zeros 1.2 ms, dense 2.2 ms; on an AVX2 machine without AVX-512, merging to
8 instead of 16 channels lifts igc-L4's realised MAC saving from 51 % to 59-62 %). While
exporting, a kernel merges adjacent groups (zero blocks, the same function) until each has
``ORT_MIN_GROUP_CHANNELS`` channels: this machine's block (``ort_group_channels``), or
``$GROUPNAS_ORT_GROUP_CHANNELS`` to export for another machine.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops.shuffle import _tracing, channel_shuffle, shuffle_permutation

__all__ = ["ORT_MIN_GROUP_CHANNELS", "ort_group_channels", "nchwc_block", "bn_affine", "fold_conv_bn", "fold_bn_into",
           "fold_conv_affine", "inverse_permutation", "is_identity", "ConvKernel", "HetKernel", "IGCKernel",
           "IGC_SHUFFLE_MIN_WIDTH", "IGC_SHUFFLE_MIN_M",
           "PermutedOp", "within_blocks", "merge_groups"]

GROUP_CHANNELS_ENV = "GROUPNAS_ORT_GROUP_CHANNELS"


@functools.cache
def nchwc_block(cpuinfo_path: str = "/proc/cpuinfo") -> int:
    """MLAS' NCHWc block on the CPU that ``cpuinfo_path`` describes: 16 with AVX-512F, 8 on
    other x86-64 (SSE2 and up), else 16 (no x86 flags to read: the conservative choice)."""
    flags: set[str] = set()
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    if "avx512f" in flags:
        return 16
    return 8 if "sse2" in flags else 16


def ort_group_channels() -> int:
    """Channels per group from which onnxruntime's grouped conv stays in its NCHWc layout:
    ``$GROUPNAS_ORT_GROUP_CHANNELS`` when set to a positive integer, else ``nchwc_block()``."""
    env = os.environ.get(GROUP_CHANNELS_ENV, "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else nchwc_block()


ORT_MIN_GROUP_CHANNELS = ort_group_channels()

# From this width (L * M) and this many secondary groups (M) on, an exported IGC layer does its
# secondary conv as a channel gather, the M-group 1x1 and a gather back; else as one dense 1x1
# with the block-sparse weight. The dense 1x1 does M times the secondary's MACs, against two
# copies of the map. Measured here (AMD EPYC, AVX2, onnxruntime, 1 thread, whole nets on
# `small` at 3x224x224, each form interleaved with the dense net in one process), share of the
# MAC saving realised: igc-L4 61 % all dense, 66 % at these thresholds, 63 % from 32 channels
# and 8 groups; igc-L2 59 / 66 %; igc-M2 (the dense 1x1 only twice the MACs) 56 % dense, 53 %
# shuffled from 64 channels whatever M, so few groups keep the dense form.
IGC_SHUFFLE_MIN_WIDTH = 64
IGC_SHUFFLE_MIN_M = 16


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(scale, shift) of an eval-mode BatchNorm2d."""
    var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
    mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
    scale = torch.rsqrt(var.detach().double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -mean.detach().double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def _scaled(weight: Tensor, scale: Tensor) -> Tensor:
    return (weight.detach().double() * scale.view(-1, *([1] * (weight.dim() - 1)))).to(weight.dtype)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, order: Tensor | None = None) -> nn.Conv2d:
    """A conv with bias equal to ``bn(conv(x))`` in eval mode; with ``order``, filter ``f`` gets
    BN channel ``order[f]`` (the BN normalises a permutation of the conv's outputs)."""
    scale, shift = bn_affine(bn)
    if order is not None:
        scale, shift = scale[order], shift[order]
    return fold_conv_affine(conv, scale, shift)


def fold_bn_into(op: nn.Module, bn: nn.BatchNorm2d) -> nn.Module | None:
    """``bn(op(x))`` as one module: the op's own ``fold_bn`` where it has one, a plain conv with
    the BN in its weights and bias, else None (the pair stays as it is)."""
    fold = getattr(op, "fold_bn", None)
    if callable(fold):
        return fold(bn)
    return fold_conv_bn(op, bn) if isinstance(op, nn.Conv2d) else None


def _pair(v: Sequence[int]) -> tuple[int, int]:
    return int(v[0]), int(v[1])


def fold_conv_affine(conv: nn.Conv2d, scale: Tensor, shift: Tensor) -> nn.Conv2d:
    """A conv with bias equal to ``scale * conv(x) + shift`` (per output channel)."""
    pad = conv.padding if isinstance(conv.padding, str) else _pair(conv.padding)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, _pair(conv.kernel_size), _pair(conv.stride), pad,
                    _pair(conv.dilation), conv.groups, bias=True, padding_mode=conv.padding_mode)
    assert out.bias is not None
    with torch.no_grad():
        out.weight.copy_(_scaled(conv.weight, scale))
        b = shift if conv.bias is None else shift + scale * conv.bias.detach().double()
        out.bias.copy_(b.to(out.bias.dtype))
    out.requires_grad_(False)
    return out.to(conv.weight.device)


def inverse_permutation(q: Tensor) -> Tensor:
    """``inv`` with ``inv[q[k]] = k``."""
    inv = torch.empty_like(q)
    inv[q] = torch.arange(len(q), device=q.device)
    return inv


def within_blocks(q: Tensor, blocks: int) -> bool:
    """Whether permutation ``q`` moves every channel only inside its own contiguous block."""
    n = len(q)
    if blocks < 1 or n % blocks:
        return False
    size = n // blocks
    pos = torch.arange(n, device=q.device)
    return bool(torch.equal(torch.sort(q).values, pos) and torch.equal(q // size, pos // size))


def _permute_group_columns(weight: Tensor, q: Tensor, groups: int) -> Tensor:
    """Weight that reads ``x`` where ``weight`` read ``x[:, q]`` (``q`` within blocks)."""
    per_in, per_out = weight.shape[1], weight.shape[0] // groups
    parts = []
    for g in range(groups):
        local = q[g * per_in:(g + 1) * per_in] - g * per_in
        parts.append(weight[g * per_out:(g + 1) * per_out].index_select(1, inverse_permutation(local)))
    return torch.cat(parts)


def merge_groups(weight: Tensor, groups: int, min_channels: int) -> tuple[Tensor, int]:
    """(weight, groups) of the same grouped conv with adjacent groups merged (zero blocks) until
    each group has at least ``min_channels`` input and output channels (or one group is left)."""
    cout, per_in = weight.shape[0], weight.shape[1]
    fits = [d for d in range(groups, 0, -1)
            if groups % d == 0 and per_in * groups // d >= min_channels and cout // d >= min_channels]
    new = fits[0] if fits else 1
    if new == groups:
        return weight, groups
    k = groups // new
    per_out = cout // groups
    out = weight.new_zeros(cout, per_in * k, *weight.shape[2:])
    for g in range(groups):
        j = g % k
        out[g * per_out:(g + 1) * per_out, j * per_in:(j + 1) * per_in] = weight[g * per_out:(g + 1) * per_out]
    return out, new


class _Exportable(nn.Module):
    """A kernel with a separate export form: its weights are computed once, before tracing
    (``prepare_export``, called by ``inference_model``), so the traced graph holds constants
    instead of the ops that derive them."""

    _export_cache: tuple | None = None

    def _export_form(self) -> tuple:  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare_export(self) -> None:
        with torch.no_grad():
            self._export_cache = self._export_form()

    def export_form(self) -> tuple:
        cache = self._export_cache
        device = next(self.parameters()).device
        if cache is not None and all(t.device == device for t in cache if isinstance(t, Tensor)):
            return cache
        return self._export_form()  # not prepared, or moved to another device since


class ConvKernel(_Exportable):
    """One (grouped) convolution with bias; ``in_blocks = out_blocks = groups``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.in_blocks = self.out_blocks = conv.groups

    def _export_form(self) -> tuple:
        return merge_groups(self.conv.weight.detach(), self.conv.groups, ORT_MIN_GROUP_CHANNELS)

    def permute_out(self, q: Tensor) -> bool:
        if not within_blocks(q, self.out_blocks):
            return False
        with torch.no_grad():
            self.conv.weight.copy_(self.conv.weight[q])
            if self.conv.bias is not None:
                self.conv.bias.copy_(self.conv.bias[q])
        self._export_cache = None
        return True

    def permute_in(self, q: Tensor) -> bool:
        if not within_blocks(q, self.in_blocks):
            return False
        with torch.no_grad():
            self.conv.weight.copy_(_permute_group_columns(self.conv.weight, q, self.conv.groups))
        self._export_cache = None
        return True

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        if _tracing() and c.groups > 1:
            w, g = self.export_form()
            return F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, g)
        return c(x)


class HetKernel(_Exportable):
    """HetConv in class-major coordinates: ``conv_P(x; W_kxk) + conv_1x1(x; W_pw) + b``.

    ``W_pw`` is the dense 1x1 over all channels, zero on the P diagonal blocks that the K x K
    part covers. Exporting with fewer than 16 channels per K x K group: groups are merged, and
    when one group is left the 1x1 weight goes into the centre tap (one dense K x K conv).
    """

    _dense_eager: Tensor | None

    def __init__(self, kxk: Tensor, pw: Tensor, bias: Tensor, groups: int, stride: int) -> None:
        super().__init__()
        self.kxk = nn.Parameter(kxk.detach().clone(), requires_grad=False)
        self.pw = nn.Parameter(pw.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.groups, self.stride = groups, stride
        self.in_blocks = self.out_blocks = groups
        self.register_buffer("_dense_eager", None, persistent=False)

    def permute_out(self, q: Tensor) -> bool:
        if not within_blocks(q, self.out_blocks):
            return False
        with torch.no_grad():
            for p in (self.kxk, self.pw, self.bias):
                p.copy_(p[q])
        self._export_cache = self._dense_eager = None
        return True

    def permute_in(self, q: Tensor) -> bool:
        if not within_blocks(q, self.in_blocks):
            return False
        with torch.no_grad():
            self.kxk.copy_(_permute_group_columns(self.kxk, q, self.groups))
            self.pw.copy_(self.pw.index_select(1, inverse_permutation(q)))
        self._export_cache = self._dense_eager = None
        return True

    def _export_form(self) -> tuple:
        w, g = merge_groups(self.kxk.detach(), self.groups, ORT_MIN_GROUP_CHANNELS)
        return (self._fused(), 1) if g == 1 else (w, g)

    def _fused(self) -> Tensor:
        """The one dense K x K weight: the K x K blocks, the 1x1 weights in the centre tap."""
        k = self.kxk.shape[-1]
        w = merge_groups(self.kxk.detach(), self.groups, 1 << 30)[0].clone()
        w[:, :, k // 2, k // 2] += self.pw.detach()[:, :, 0, 0]
        return w

    def prepare_export(self) -> None:
        super().prepare_export()
        # eager: with fewer than 8 inputs per group (the first layers), one dense conv measured
        # as fast as the grouped conv alone (16 -> 32 at 224x224, stride 2: 1.65 vs 1.34 + 0.38 ms)
        with torch.no_grad():
            self._dense_eager = self._fused() if self.kxk.shape[1] < 8 else None

    def forward(self, x: Tensor) -> Tensor:
        k = self.kxk.shape[-1]
        if _tracing():
            w, g = self.export_form()
            if g == 1:
                return F.conv2d(x, w, self.bias, self.stride, k // 2)
            return F.conv2d(x, w, self.bias, self.stride, k // 2, 1, g) + F.conv2d(x, self.pw, None, self.stride)
        if self._dense_eager is not None:
            return F.conv2d(x, self._dense_eager, self.bias, self.stride, k // 2)
        y = F.conv2d(x, self.kxk, self.bias, self.stride, k // 2, 1, self.groups)
        return y.add_(F.conv2d(x, self.pw, None, self.stride))


class IGCKernel(_Exportable):
    """IGC (Zhang et al., ICCV 2017) with BN folded into the secondary conv: primary K x K
    conv (L groups), then ``out[j M + m] = sum_l W2[m, j, l] * z[l M + m] + b`` (the
    interleave, M-group 1x1 and interleave back in one contraction).

    NCHW at batch 1: one batched matmul over m on a strided view of the primary output, written
    straight into the interleaved-back order (no permutation copy at all). Otherwise
    (channels_last, larger batches): a dense 1x1 with the block-sparse weight, the same
    function, which beats two channel shuffles around a grouped 1x1 there. Exported: two channel
    gathers around the M-group 1x1 from ``IGC_SHUFFLE_MIN_WIDTH`` channels and
    ``IGC_SHUFFLE_MIN_M`` groups on (onnxruntime copies a map faster than it does the dense
    1x1's extra MACs there), else the dense 1x1.
    """

    def __init__(self, primary: nn.Conv2d, w2: Tensor, bias: Tensor, L: int, M: int) -> None:
        super().__init__()
        self.primary = ConvKernel(primary)
        self.L, self.M = L, M
        self.w2 = nn.Parameter(w2.detach().clone(), requires_grad=False)  # (M, C_out / M, L)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)  # logical order
        self.in_blocks, self.out_blocks = self.primary.in_blocks, len(bias)  # outputs stay in place
        self._dense: Tensor | None = None

    def permute_in(self, q: Tensor) -> bool:
        self._export_cache = None
        return self.primary.permute_in(q)

    def permute_out(self, q: Tensor) -> bool:
        return within_blocks(q, self.out_blocks)  # only the identity

    def _export_form(self) -> tuple:
        """(dense 1x1 weight; the whole op as one K x K conv, or ``None``; the M-group 1x1's
        weight and bias in its own output order, ``(m, j)``, or ``None`` where the dense 1x1
        is used).

        When the primary's groups merge into one for onnxruntime (few input channels), the two
        linear convs compose into one dense K x K conv, ``W[o, i] = sum_c W2[o, c] W1[c, i]``:
        the dense cost, instead of more than it."""
        self._dense = None
        dense = self.dense_weight()
        M, J, L = self.w2.shape
        grouped = None
        if L * M >= IGC_SHUFFLE_MIN_WIDTH and M >= IGC_SHUFFLE_MIN_M:
            index = functools.partial(torch.tensor, dtype=torch.long, device=self.w2.device)
            grouped = (self.w2.detach().reshape(M * J, L, 1, 1).clone(),
                       self.bias.detach().view(J, M).t().reshape(-1).clone(),
                       index(shuffle_permutation(L * M, L)), index(shuffle_permutation(J * M, M)))
        w1, g = self.primary.export_form()
        if g != 1:
            return dense, None, grouped
        w1 = merge_groups(w1, g, 1 << 30)[0]
        return dense, torch.einsum("oc,cikl->oikl", dense[:, :, 0, 0], w1), None

    def prepare_export(self) -> None:
        super().prepare_export()
        self.primary.prepare_export()

    def dense_weight(self) -> Tensor:
        """(C_out, L M, 1, 1): entry [j M + m, l M + m] = W2[m, j, l], zero elsewhere."""
        if self._dense is None or self._dense.device != self.w2.device:
            M, J, L = self.w2.shape
            w = self.w2.detach().new_zeros(J, M, L, M)
            for m in range(M):
                w[:, m, :, m] = self.w2.detach()[m]  # w[j, m, l, m] = W2[m, j, l]
            self._dense = w.reshape(J * M, L * M, 1, 1)
        return self._dense

    def forward(self, x: Tensor) -> Tensor:
        if _tracing() and self.export_form()[1] is not None:
            c = self.primary.conv
            return F.conv2d(x, self.export_form()[1], self.bias, c.stride, c.padding)
        z = self.primary(x)
        n, _, h, w = z.shape
        if n == 1 and z.is_contiguous() and not _tracing():
            M, J, L = self.w2.shape
            out = torch.empty((1, J * M, h, w), dtype=z.dtype, device=z.device)
            o = out.view(J, M, h * w).transpose(0, 1)  # (M, J, HW) view of the logical order
            bias = self.bias.view(J, M, 1).transpose(0, 1)
            torch.baddbmm(bias, self.w2, z.view(L, M, h * w).transpose(0, 1), out=o)
            return out
        if not _tracing():
            return F.conv2d(z, self.dense_weight(), self.bias)
        dense, _, grouped = self.export_form()
        if grouped is None:
            return F.conv2d(z, dense, self.bias)
        # z[l M + m] -> m L + l; the 1x1's (m, j) order -> j M + m. As two gathers: one ONNX
        # node each, faster on onnxruntime than reshape / transpose / reshape (igc-L4 on
        # `small`, one process: 65-66 % of the MAC saving realised, against 64-65 %).
        weight, bias, into, back = grouped
        return F.conv2d(z.index_select(1, into), weight, bias, groups=self.w2.shape[0]).index_select(1, back)


class PermutedOp(nn.Module):
    """``kernel(x[:, in_index])[:, out_index]``; an index of ``None`` is the identity.

    An index may also gather (repeat or drop channels, as a condensed learned op's input
    selection does); only true permutations are ever absorbed into weights. ``in_width`` is the
    width of ``x`` when ``in_index`` selects from more channels than it lists.
    """

    in_index: Tensor | None
    out_index: Tensor | None

    def __init__(self, kernel: nn.Module, in_index: Tensor | None = None, out_index: Tensor | None = None,
                 in_width: int | None = None) -> None:
        super().__init__()
        self.kernel = kernel
        self.in_width = in_width
        self.register_buffer("in_index", _clean(in_index, in_width))
        self.register_buffer("out_index", _clean(out_index))

    def permute_in(self, q: Tensor) -> bool:
        """Absorb ``x -> x[:, q]`` in front of the kernel into its weights, if it can."""
        fn = getattr(self.kernel, "permute_in", None)
        return bool(fn(q)) if fn is not None else False

    def permute_out(self, q: Tensor) -> bool:
        """Absorb ``z -> z[:, q]`` after the kernel into its weights, if it can."""
        fn = getattr(self.kernel, "permute_out", None)
        return bool(fn(q)) if fn is not None else False

    def forward(self, x: Tensor) -> Tensor:
        if self.in_index is not None:
            x = self._gather(x, self.in_index)
        y = self.kernel(x)
        if self.out_index is not None:
            y = self._gather(y, self.out_index)
        return y

    def _gather(self, x: Tensor, index: Tensor) -> Tensor:
        """``x[:, index]``; a ShuffleNet shuffle runs as torch's channel_shuffle kernel (faster
        on channels_last tensors: 0.42 vs 0.55 ms at 32 x 112 x 112 here)."""
        if _tracing():
            return x.index_select(1, index)
        cache = self.__dict__.setdefault("_shuffle_of", {})
        key = (index.data_ptr(), len(index), index.device)
        if key not in cache:
            cache[key] = _shuffle_groups(index)
        g = cache[key]
        return channel_shuffle(x, g) if g and x.shape[1] == len(index) else x.index_select(1, index)

    def extra_repr(self) -> str:
        return f"in_index={'-' if self.in_index is None else len(self.in_index)}, " \
               f"out_index={'-' if self.out_index is None else len(self.out_index)}"


def _shuffle_groups(index: Tensor) -> int:
    """``g`` if ``index`` is the channel shuffle with ``g`` groups, else 0."""
    n = len(index)
    cpu = index.cpu().tolist()
    for g in range(2, n):
        if n % g == 0 and cpu == shuffle_permutation(n, g):
            return g
    return 0


def is_identity(index: Tensor, n: int) -> bool:
    """Whether ``x[:, index]`` of an ``n``-channel ``x`` is ``x`` itself: ``index`` is 0..n-1
    (a gather of the first k < n channels is a selection, not the identity)."""
    return len(index) == n and torch.equal(index.cpu(), torch.arange(n))


def _clean(index: Tensor | None, width: int | None = None) -> Tensor | None:
    """``None`` for an identity permutation (of ``width`` channels, default ``len(index)``), else a
    long tensor."""
    if index is None:
        return None
    index = index.detach().long().clone()
    return None if is_identity(index, len(index) if width is None else width) else index
