"""Fixed skeletons (widths, depth, strides) that the search spaces fill with grouping choices.

Each backbone is an ``Arch`` template built from dense convs (``mobilenet`` from depthwise
separable ones); a space keeps the stem, head, widths and strides and replaces each layer's
op and parameters.

- ``small``: a 7-conv CIFAR-style net for fast searches (16-32-32-64-64-128-128).
- ``vgg16``: VGG-16 for 32x32 inputs as in the HetConv paper (13 convs, 5 max-pools,
  ~313 M MACs on 3x32x32).
- ``resnet``: a ResNet-style net (3 stages of 3 layers, 16/32/64 channels) where each
  layer has a shortcut.
- ``mobilenet``: MobileNet-v1 adapted to 32x32 (13 depthwise-separable layers, 32..1024).

``width`` scales every channel count (rounded to a multiple of 8, at least 8), so a space can
trade grouping for width as IGC suggests.
"""

from __future__ import annotations

from typing import Callable

from .arch import Arch, HeadSpec, LayerSpec

__all__ = ["BACKBONES", "get_backbone", "scale_width"]


def scale_width(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8 (at least 8); exact when width == 1."""
    if width == 1.0:
        return channels
    return max(8, int(round(channels * width / 8)) * 8)


def _arch(input_shape, num_classes, stem_c, plan, op="conv", head="gap", width=1.0) -> Arch:
    """``plan``: rows of (out_channels, stride, residual, pool)."""
    stem = LayerSpec("conv", scale_width(stem_c, width), 3, 1)
    layers = tuple(
        LayerSpec(op, scale_width(c, width), 3, s, residual=r, pool=p) for c, s, r, p in plan
    )
    return Arch(tuple(input_shape), num_classes, stem, layers, HeadSpec(head))


def small(input_shape=(1, 32, 32), num_classes=10, width=1.0) -> Arch:
    plan = [(32, 2, False, "none"), (32, 1, False, "none"), (64, 2, False, "none"),
            (64, 1, False, "none"), (128, 2, False, "none"), (128, 1, False, "none")]
    return _arch(input_shape, num_classes, 16, plan, width=width)


def vgg16(input_shape=(3, 32, 32), num_classes=10, width=1.0) -> Arch:
    cfg = [64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    plan = []
    for item in cfg:
        if item == "M":
            c, s, r, _ = plan[-1]
            plan[-1] = (c, s, r, "max")
        else:
            plan.append((item, 1, False, "none"))
    return _arch(input_shape, num_classes, 64, plan, width=width)


def resnet(input_shape=(3, 32, 32), num_classes=10, width=1.0) -> Arch:
    plan = []
    for c, first_stride in ((16, 1), (32, 2), (64, 2)):
        plan += [(c, first_stride, True, "none"), (c, 1, True, "none"), (c, 1, True, "none")]
    return _arch(input_shape, num_classes, 16, plan, width=width)


def mobilenet(input_shape=(3, 32, 32), num_classes=10, width=1.0) -> Arch:
    rows = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
            (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    plan = [(c, s, False, "none") for c, s in rows]
    return _arch(input_shape, num_classes, 32, plan, op="dwsep", width=width)


BACKBONES: dict[str, Callable[..., Arch]] = {
    "small": small,
    "vgg16": vgg16,
    "resnet": resnet,
    "mobilenet": mobilenet,
}


def get_backbone(name: str, input_shape=(1, 32, 32), num_classes=10, width: float = 1.0) -> Arch:
    """The backbone ``name`` for this input shape and class count."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    return BACKBONES[name](tuple(input_shape), num_classes, float(width))
