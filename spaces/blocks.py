"""The papers' blocks as ``BlockSpec`` data (used by the backbones).

- ``basic`` (ResNet, He et al., CVPR 2016): 3x3 -> 3x3, shortcut identity or projection, add, ReLU.
- ``bottleneck`` (ResNet; ResNeXt, Xie et al., CVPR 2017, with ``groups`` on the 3x3):
  1x1 reduce -> 3x3 (stride) -> 1x1 expand, add, ReLU.
- ``inverted`` (MobileNetV2, Sandler et al., CVPR 2018): 1x1 expand (ReLU6) -> 3x3 depthwise
  (ReLU6) -> 1x1 linear projection; identity shortcut when the shape is kept, no act after.
- ``separable`` (MobileNet v1, Howard et al. 2017): 3x3 depthwise + BN + ReLU, then 1x1 + BN + ReLU:
  the paper's BN + ReLU between the two parts, as two layers.
- ``shuffle_v1`` (ShuffleNet, Zhang et al., CVPR 2018): 1x1 group conv + shuffle -> 3x3
  depthwise -> 1x1 group conv; add (stride 1) or concat with a 3x3 average-pooled input (stride 2); ReLU.
- ``shuffle_v2`` (ShuffleNet V2, Ma et al., ECCV 2018): channel split, 1x1 -> 3x3 dw -> 1x1 on one
  half, concat, shuffle 2; stride 2: both branches read the input (the shortcut: 3x3 dw s2 -> 1x1).

- ``dense`` (CondenseNet, Huang et al., CVPR 2018): pre-activation BN-ReLU-learned group 1x1
  (``condense``, to ``bottleneck`` x growth) -> BN-ReLU-group 3x3 (to the growth rate), the input
  concatenated in front (identity shortcut + concat); ``pool``/``norm``/``act`` after the concat
  for a transition or the network's last BN-ReLU.
- ``igc_basic`` (IGC, Zhang et al., ICCV 2017, ImageNet nets): ``basic`` with each 3x3 an IGC
  (L primary partitions, M = C_out / L), a 1x1 projection with L groups where the width changes.

A depthwise conv is the ``group`` op with groups = channels; a grouped layer with one group is
the ``conv`` op (so a space sees the canonical form).
"""

from __future__ import annotations

from .arch import BlockSpec, LayerSpec

__all__ = ["conv", "dw", "basic", "bottleneck", "inverted", "separable", "shuffle_v1", "shuffle_v2", "dense",
           "igc_basic"]


def conv(out: int, k: int = 1, stride: int = 1, groups: int = 1, *, act: str = "relu", shuffle: bool = False,
         **extra) -> LayerSpec:
    """A (grouped) K x K conv layer with BN and ``act``; ``group`` op only when groups > 1."""
    if groups == 1:
        return LayerSpec("conv", out, k, stride, act=act, **extra)
    return LayerSpec("group", out, k, stride, {"groups": groups, "shuffle": shuffle}, act=act, **extra)  # type: ignore[arg-type]  # LayerSpec freezes a mapping


def dw(channels: int, stride: int = 1, *, k: int = 3, act: str = "relu") -> LayerSpec:
    """Depthwise K x K conv + BN (+ act)."""
    return conv(channels, k, stride, channels, act=act)


def _shortcut(cin: int, cout: int, stride: int) -> str:
    return "identity" if cin == cout and stride == 1 else "projection"


def basic(cin: int, cout: int, stride: int = 1) -> BlockSpec:
    return BlockSpec((conv(cout, 3, stride), conv(cout, 3, act="none")), _shortcut(cin, cout, stride), act="relu")


def bottleneck(cin: int, mid: int, cout: int, stride: int = 1, groups: int = 1, stride_on_1x1: bool = False
               ) -> BlockSpec:
    s1, s3 = (stride, 1) if stride_on_1x1 else (1, stride)
    layers = (conv(mid, 1, s1), conv(mid, 3, s3, groups), conv(cout, 1, act="none"))
    return BlockSpec(layers, _shortcut(cin, cout, stride), act="relu")


def inverted(cin: int, cout: int, stride: int, expand: int, act: str = "relu6") -> BlockSpec:
    """``act``: ReLU6 (MobileNetV2) or PReLU (MobileFaceNet)."""
    mid = cin * expand
    layers = ((conv(mid, 1, act=act),) if expand != 1 else ()) + (
        dw(mid, stride, act=act), conv(cout, 1, act="none"))
    return BlockSpec(layers, "identity" if cin == cout and stride == 1 else "none")


def separable(cin: int, cout: int, stride: int) -> BlockSpec:
    return BlockSpec((dw(cin, stride), conv(cout, 1)))


def shuffle_v1(cin: int, cout: int, stride: int, groups: int, first: bool = False) -> BlockSpec:
    """``first``: the stage-2 entry unit, whose first 1x1 is dense (the input is narrow)."""
    mid = cout // 4
    main_out = cout - cin if stride == 2 else cout
    g1 = 1 if first else groups
    layers = (conv(mid, 1, 1, g1, shuffle=g1 > 1), dw(mid, stride, act="none"),
              conv(main_out, 1, 1, groups, act="none"))
    if stride == 2:
        return BlockSpec(layers, "avgpool", "concat", act="relu")
    return BlockSpec(layers, "identity", act="relu")


def shuffle_v2(cin: int, cout: int, stride: int) -> BlockSpec:
    half = cout // 2
    if stride == 1:
        layers = (conv(half, 1), dw(half, act="none"), conv(half, 1))
        return BlockSpec(layers, "identity", "concat", split=True, shuffle=2)
    layers = (conv(half, 1), dw(half, 2, act="none"), conv(half, 1))
    branch = (dw(cin, 2, act="none"), conv(cout - half, 1))
    return BlockSpec(layers, "branch", "concat", shuffle=2, branch=branch)


def dense(growth: int, groups: int, condense_factor: int, bottleneck: int = 4, **after) -> BlockSpec:
    """One dense layer; ``after``: the block's ``pool``, ``norm`` and ``act`` after the concat."""
    params = {"groups": groups, "condense_factor": condense_factor}
    learned = LayerSpec("condense", bottleneck * growth, 1, 1, params, preact=True)  # type: ignore[arg-type]  # LayerSpec freezes a mapping
    return BlockSpec((learned, conv(growth, 3, 1, groups, preact=True)), "identity", "concat", **after)


def igc_basic(cin: int, cout: int, stride: int, L: int) -> BlockSpec:
    def igc(act: str, s: int) -> LayerSpec:
        return LayerSpec("igc", cout, 3, s, {"L": L, "M": cout // L}, act=act)  # type: ignore[arg-type]  # LayerSpec freezes a mapping
    if cin == cout and stride == 1:
        return BlockSpec((igc("relu", stride), igc("none", 1)), "identity", act="relu")
    return BlockSpec((igc("relu", stride), igc("none", 1)), "projection", act="relu", proj_groups=L)
