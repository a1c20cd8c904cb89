"""The IGC paper's ImageNet network as ``Arch`` data.

``igc_resnet18`` (Zhang, Qi, Xiao, Wang, "Interleaved Group Convolutions", ICCV 2017, ImageNet
table; layouts as in the authors' released ImageNet models): ResNet-18's stages of 2, 2, 2, 2
basic blocks with each 3x3 conv an IGC block (``spaces.ops.igc``: primary 3x3 group conv with L
partitions of M channels, interleave, secondary 1x1 group conv with M partitions of L, BN + ReLU
after the pair), the shortcut a 1x1 projection with L groups (+ BN) wherever the width changes.
``L`` and ``M`` are the first stage's; each later stage doubles the width by doubling one of
them (``grow``):

- ``grow="L"`` (IGC-L100M2+Ident.: 8.61 M params, 1.3 x 10^9 FLOPs): widths 2L, 4L, 8L, 16L
  (for M = 2), L doubling, M fixed; the stem has L channels, so stage 1 opens with a projection.
- ``grow="M"`` (IGC-L4M32+Ident., 1.9 x 10^9; IGC-L16M16+Ident., 2.2 x 10^9): widths LM, 2LM, 4LM,
  8LM, M doubling, L fixed; the stem has L M channels.

ImageNet stem: 7x7 stride 2 and a 3x3 max pool; for small inputs (H, W <= 64) the CIFAR
adaptation of ``spaces.nets_resnet``: a 3x3 stride-1 stem, no pool. ``width`` scales the
partition count that grows (L or M; rounded, at least 1), so every width stays an IGC net.
"""

from __future__ import annotations

from .arch import Arch, ArchError, HeadSpec
from .blocks import igc_basic
from .nets_resnet import _stem

__all__ = ["igc_resnet18"]


def igc_resnet18(input_shape=(3, 224, 224), num_classes=1000, width=1.0, *, L: int = 100, M: int = 2,
                 grow: str = "L") -> Arch:
    for name, v in (("L", L), ("M", M)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArchError(f"igc_resnet18: option '{name}' must be a positive integer, got {v!r}")
    if grow not in ("L", "M"):
        raise ArchError(f"igc_resnet18: option 'grow' must be 'L' or 'M', got {grow!r}")
    if grow == "L":
        L = max(1, round(L * width))
        splits = [(L << i, M) for i in range(4)]
    else:
        M = max(1, round(M * width))
        splits = [(L, M << i) for i in range(4)]
    stem = _stem(input_shape, L if grow == "L" else L * M)
    stages, cin = [], stem.out_channels
    for i, (l, m) in enumerate(splits):
        blocks = []
        for j in range(2):
            blocks.append(igc_basic(cin, l * m, 2 if i > 0 and j == 0 else 1, l))
            cin = l * m
        stages.append(tuple(blocks))
    return Arch(tuple(input_shape), num_classes, stem, tuple(stages), HeadSpec())
