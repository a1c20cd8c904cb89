"""ResNet and ResNeXt backbones as ``Arch`` data.

- ``resnet20``: the CIFAR ResNet of He et al. (CVPR 2016, Sec. 4.2): 3x3 stem with 16 channels,
  three stages of ``n`` basic blocks (16, 32, 64 channels, strides 1, 2, 2), 6n + 2 layers;
  0.27 M params for n = 3 (the paper's Table 6). The two down-sampling shortcuts are 1x1
  projections (option B) instead of the paper's zero padding (option A): +2,560 weights.
- ``resnet18`` / ``resnet50`` (He et al., Table 1: 1.8 and 3.8 x 10^9 FLOPs; the common
  stride-on-3x3 ResNet-50, as in the ResNeXt paper's Table 1, 4.1 x 10^9 and 25.5 M params),
  ``resnext50`` (Xie et al., CVPR 2017, Table 1: 32x4d, 4.2 x 10^9 FLOPs, 25.0 M params).
  ImageNet stem: 7x7 stride 2 and a 3x3 max pool. For small inputs (H, W <= 64) the usual CIFAR
  adaptation: a 3x3 stride-1 stem and no pool.
"""

from __future__ import annotations

from typing import Sequence

from .arch import Arch, HeadSpec, LayerSpec
from .blocks import basic, bottleneck
from .widths import scale_width

__all__ = ["resnet20", "resnet18", "resnet50", "resnext50"]


def _small(shape: Sequence[int]) -> bool:
    return max(shape[1:]) <= 64


def _stem(shape: Sequence[int], channels: int) -> LayerSpec:
    if _small(shape):
        return LayerSpec("conv", channels, 3, 1)
    return LayerSpec("conv", channels, 7, 2, pool="max3")


def resnet20(input_shape=(3, 32, 32), num_classes=10, width=1.0, *, n: int = 3) -> Arch:
    chans = [scale_width(c, width) for c in (16, 32, 64)]
    stages, cin = [], chans[0]
    for c, s in zip(chans, (1, 2, 2)):
        stages.append(tuple(basic(cin if i == 0 else c, c, s if i == 0 else 1) for i in range(n)))
        cin = c
    return Arch(tuple(input_shape), num_classes, LayerSpec("conv", chans[0], 3, 1), tuple(stages), HeadSpec())


def _resnet(input_shape, num_classes, width, depths, block, stem_c=64) -> Arch:
    stem = _stem(input_shape, scale_width(stem_c, width))
    stages, cin = [], stem.out_channels
    for i, n in enumerate(depths):
        stride = 1 if i == 0 else 2
        blocks = []
        for j in range(n):
            b = block(cin, i, stride if j == 0 else 1)
            blocks.append(b)
            cin = b.layers[-1].out_channels
        stages.append(tuple(blocks))
    return Arch(tuple(input_shape), num_classes, stem, tuple(stages), HeadSpec())


def resnet18(input_shape=(3, 224, 224), num_classes=1000, width=1.0) -> Arch:
    def block(cin, i, s):
        return basic(cin, scale_width(64 << i, width), s)
    return _resnet(input_shape, num_classes, width, (2, 2, 2, 2), block)


def resnet50(input_shape=(3, 224, 224), num_classes=1000, width=1.0, *, stride_on_1x1: bool = False) -> Arch:
    """``stride_on_1x1``: the original ResNet-50 of He et al. (3.8 G); default the 3x3 stride (4.1 G)."""
    def block(cin, i, s):
        return bottleneck(cin, scale_width(64 << i, width), scale_width(256 << i, width), s,
                          stride_on_1x1=stride_on_1x1)
    return _resnet(input_shape, num_classes, width, (3, 4, 6, 3), block)


def resnext50(input_shape=(3, 224, 224), num_classes=1000, width=1.0, *, cardinality: int = 32,
              group_width: int = 4) -> Arch:
    """ResNeXt-50 (``cardinality`` x ``group_width``d, default 32x4d)."""
    def block(cin, i, s):
        mid = scale_width(cardinality * (group_width << i), width, cardinality)
        return bottleneck(cin, mid, scale_width(256 << i, width), s, groups=cardinality)
    return _resnet(input_shape, num_classes, width, (3, 4, 6, 3), block)
