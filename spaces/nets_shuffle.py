"""ShuffleNet backbones as ``Arch`` data.

- ``shufflenet_v1`` (Zhang et al., CVPR 2018, Table 1, whose last row gives ShuffleNet 1x at
  g = 1, 2, 3, 4, 8 a complexity of 143, 140, 137, 133, 137 MFLOPs): 3x3 stride-2 stem with 24 channels, a 3x3 max
  pool, stages of 4, 8, 4 units with the output widths of Table 1 for ``groups``; bottleneck
  width a quarter of the unit's output; no group conv on the first 1x1 of stage 2.
- ``shufflenet_v2`` (Ma et al., ECCV 2018, Table 5: 1x has 146 MFLOPs, 2.3 M params): the
  same stem, stages of 4, 8, 4 units with 116, 232, 464 channels (0.5x, 1.5x, 2x: Table 5's
  widths), a 1x1 conv to 1024 (2048 at 2x).

For small inputs (H, W <= 64) the common CIFAR adaptation: a stride-1 stem and no max pool.
"""

from __future__ import annotations

from .arch import Arch, ArchError, BlockSpec, HeadSpec
from .blocks import conv, shuffle_v1, shuffle_v2
from .widths import scale_width

__all__ = ["shufflenet_v1", "shufflenet_v2", "V1_WIDTHS", "V2_WIDTHS"]

V1_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
             8: (384, 768, 1536)}  # Table 1, stage output channels at 1x
V2_WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
             2.0: (244, 488, 976, 2048)}  # Table 5
REPEATS = (4, 8, 4)


def _stem(input_shape, channels: int):
    if max(input_shape[1:]) <= 64:
        return conv(channels, 3, 1)
    return conv(channels, 3, 2, pool="max3")


def shufflenet_v1(input_shape=(3, 224, 224), num_classes=1000, width=1.0, *, groups: int = 3) -> Arch:
    if groups not in V1_WIDTHS:
        raise ArchError(f"shufflenet_v1: option 'groups' must be one of {sorted(V1_WIDTHS)}, got {groups!r}")
    stem = _stem(input_shape, scale_width(24, width, groups))
    stages, cin = [], stem.out_channels
    for i, (c, n) in enumerate(zip(V1_WIDTHS[groups], REPEATS)):
        c = scale_width(c, width, 4 * groups)
        stage = []
        for j in range(n):
            stage.append(shuffle_v1(cin, c, 2 if j == 0 else 1, groups, first=(i == 0 and j == 0)))
            cin = c
        stages.append(tuple(stage))
    return Arch(tuple(input_shape), num_classes, stem, tuple(stages), HeadSpec())


def shufflenet_v2(input_shape=(3, 224, 224), num_classes=1000, width=1.0) -> Arch:
    widths: tuple[int, ...]
    if width in V2_WIDTHS:
        widths = V2_WIDTHS[width]
    else:
        widths = tuple(scale_width(c, width, 4) for c in V2_WIDTHS[1.0][:3]) + (1024,)
    stem = _stem(input_shape, 24)
    stages, cin = [], stem.out_channels
    for c, n in zip(widths[:3], REPEATS):
        stage = []
        for j in range(n):
            stage.append(shuffle_v2(cin, c, 2 if j == 0 else 1))
            cin = c
        stages.append(tuple(stage))
    stages.append((BlockSpec((conv(widths[3], 1),)),))
    return Arch(tuple(input_shape), num_classes, stem, tuple(stages), HeadSpec())
