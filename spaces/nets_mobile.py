"""MobileNet backbones as ``Arch`` data.

- ``mobilenet_v1`` (Howard et al. 2017, Table 1; Table 8: 1.0 MobileNet-224 has 569 M
  mult-adds and 4.2 M params): a 3x3 stride-2 stem with 32 channels and 13 depthwise separable
  blocks, each depthwise 3x3 + BN + ReLU then pointwise 1x1 + BN + ReLU (two layers).
- ``mobilenet_v2`` (Sandler et al., CVPR 2018, Table 2; Table 4: 300 M MAdds, 3.4 M params):
  a 3x3 stride-2 stem with 32 channels, 17 inverted residual blocks (expansion t, linear
  bottleneck, identity shortcut when the shape is kept), a 1x1 conv to 1280, dropout 0.2.
  ``width`` scales channels to multiples of 8 (1280 only grows).

- ``mobilefacenet`` (Chen et al., CCBR 2018: layout in Table 1; 0.99 M params and 221 M MAdds at
  3x112x112 with a 128-d embedding): 3x3 stride-2 stem and a depthwise 3x3 (64), PReLU
  bottlenecks (t, c, n, s) = (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2),
  (2, 128, 2, 1), a 1x1 conv to 512, the GDC head (7x7 depthwise + BN); the paper's linear 1x1
  conv to the embedding is the classifier (``num_classes=128`` gives the paper's network).

For small inputs (H, W <= 64) the common CIFAR adaptation: the stem has stride 1 (and for
MobileNetV2 also the 24-channel stage), so a 32x32 input ends at 2x2 (v1) or 4x4 (v2).
"""

from __future__ import annotations

from .arch import Arch, BlockSpec, HeadSpec
from .blocks import conv, dw, inverted, separable
from .widths import scale_width

__all__ = ["mobilenet_v1", "mobilenet_v2", "mobilefacenet", "V1_ROWS", "V2_SETTINGS", "MFN_SETTINGS"]

V1_ROWS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
           (512, 1), (512, 1), (1024, 2), (1024, 1))
V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))  # (expansion t, channels c, repeats n, first stride s), Table 2

MFN_SETTINGS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))  # Table 1


def _small(shape) -> bool:
    return max(shape[1:]) <= 64


def mobilenet_v1(input_shape=(3, 224, 224), num_classes=1000, width=1.0) -> Arch:
    small = _small(input_shape)
    stem = conv(scale_width(32, width), 3, 1 if small else 2)
    blocks, cin = [], stem.out_channels
    for c, s in V1_ROWS:
        c = scale_width(c, width)
        blocks.append(separable(cin, c, s))
        cin = c
    return Arch(tuple(input_shape), num_classes, stem, (tuple(blocks),), HeadSpec())


def mobilenet_v2(input_shape=(3, 224, 224), num_classes=1000, width=1.0, *, dropout: float = 0.2) -> Arch:
    small = _small(input_shape)
    stem = conv(scale_width(32, width), 3, 1 if small else 2, act="relu6")
    stages, cin = [], stem.out_channels
    for t, c, n, s in V2_SETTINGS:
        c = scale_width(c, width)
        if small and c == scale_width(24, width):
            s = 1
        blocks = []
        for i in range(n):
            blocks.append(inverted(cin, c, s if i == 0 else 1, t))
            cin = c
        stages.append(tuple(blocks))
    last = scale_width(1280, width) if width > 1.0 else 1280
    stages.append((BlockSpec((conv(last, 1, act="relu6"),)),))
    return Arch(tuple(input_shape), num_classes, stem, tuple(stages), HeadSpec(dropout=dropout))


def mobilefacenet(input_shape=(3, 112, 112), num_classes=128, width=1.0) -> Arch:
    small = _small(input_shape)
    c0 = scale_width(64, width)
    stem = conv(c0, 3, 1 if small else 2, act="prelu")
    stages: list[tuple[BlockSpec, ...]] = [(BlockSpec((dw(c0, act="prelu"),)),)]
    cin = c0
    for t, c, n, s in MFN_SETTINGS:
        c = scale_width(c, width)
        stages.append(tuple(inverted(cin if i == 0 else c, c, s if i == 0 else 1, t, act="prelu") for i in range(n)))
        cin = c
    stages.append((BlockSpec((conv(scale_width(512, width), 1, act="prelu"),)),))
    return Arch(tuple(input_shape), num_classes, stem, tuple(stages), HeadSpec("gdc"))
