"""Channel shuffle (ShuffleNet, Zhang et al., CVPR 2018) and the channel permutations it stands for.

A shuffle with ``g`` groups views the ``C`` channels as a ``g x (C/g)`` matrix and transposes it:
output channel ``j * g + i`` is input channel ``i * (C/g) + j``. It moves data only:
params = 0, MACs = 0. The group conv (``group``, ``shuffle=True``), IGC's interleaving and
HetConv's strided channel classes are all such transposes; they use the helpers here.

``pointwise`` is the other data-path helper those ops share: a (grouped) 1x1 convolution that
calls oneDNN directly on CPU, because ``F.conv2d`` sends a 1x1 conv at batch 1 to a GEMM path
that measured about 1.5-2x slower here (torch 2.13 CPU). Its MACs are not seen by
``torch.utils.flop_counter``, so only ops that report their own cost (``cost_macs``) use it.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ChannelShuffle", "channel_shuffle", "shuffle_permutation", "pointwise"]


def _tracing() -> bool:
    """Whether a tracer/exporter/compiler is recording: then use only exportable standard ops."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def pointwise(x: Tensor, weight: Tensor, stride: int = 1, groups: int = 1) -> Tensor:
    """1x1 convolution of ``x`` with ``weight`` (C_out, C_in / groups, 1, 1), no bias."""
    if _tracing():
        return F.conv2d(x, weight, None, stride, 0, 1, groups)
    if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()
        return torch.ops.aten.mkldnn_convolution(x, weight, None, [0, 0], [stride, stride], [1, 1], groups)
    return F.conv2d(x, weight, None, stride, 0, 1, groups)


def shuffle_permutation(channels: int, groups: int) -> list[int]:
    """``perm`` such that ``shuffled[:, k] = x[:, perm[k]]`` for a shuffle with ``groups`` groups."""
    if groups < 1 or channels % groups:
        raise ValueError(f"groups={groups} must divide channels={channels}")
    per = channels // groups
    return [i * per + j for j in range(per) for i in range(groups)]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Transpose the channels of an (N, C, H, W) tensor as a ``groups x (C/groups)`` matrix.

    The result keeps the memory format of ``x`` (NCHW or channels_last).
    """
    if groups == 1:
        return x
    if _tracing():  # ONNX has no channel_shuffle: a reshape / transpose / reshape it can export
        # C, H, W as constants on purpose (the batch stays free as -1): a graph that computes
        # the shapes from Shape / Gather / Concat nodes spends ~0.05 ms a shuffle on them in
        # onnxruntime at batch 1.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            _, c, h, w = (int(v) for v in x.shape)
        return x.reshape(-1, groups, c // groups, h * w).transpose(1, 2).reshape(-1, c, h, w)
    # torch's native kernel: the same transpose, ~4x faster than a view/transpose copy on
    # channels_last tensors, and it keeps the memory format.
    return F.channel_shuffle(x, groups)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle with ``groups`` groups (no parameters, no MACs)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
