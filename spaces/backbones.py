"""Backbones: the networks a search starts from, ``get_backbone(name, input_shape, num_classes, width)``.

Each is an ``Arch`` of dense, grouped and depthwise convs; a space keeps the stem, head,
block structure, widths and strides and replaces the ops of the blocks' layers.

- ``small``: a 7-conv CIFAR-style net for fast searches (16-32-32-64-64-128-128).
- ``vgg16``: VGG-16 for 32x32 inputs as in the HetConv paper (13 convs, 5 max-pools,
  313.7 M MACs on 3x32x32, Table 1 of Singh et al., CVPR 2019).
- ``resnet``, ``mobilenet``: the small ResNet-style (3 stages of 3 one-layer residual layers)
  and MobileNet-style (13 depthwise separable ops, BN + ReLU between their parts) search skeletons.
- the papers' networks (``spaces.nets_resnet``, ``nets_mobile``, ``nets_shuffle``): ``resnet20``,
  ``resnet18``, ``resnet50``, ``resnext50``, ``mobilenet_v1``, ``mobilenet_v2``,
  ``shufflenet_v1`` (option ``groups``), ``shufflenet_v2``, ``mobilefacenet``.
- ``condensenet74`` (``spaces.nets_dense``, options ``groups``, ``condense_factor``): CondenseNet-74,
  dense stages of learned group convs, costed condensed.
- ``igc_resnet18`` (``spaces.nets_igc``, options ``L``, ``M``, ``grow``): the IGC paper's ImageNet
  ResNet-18 with IGC blocks and grouped projection shortcuts.

``width`` scales every channel count (to multiples of 8 unless a net says otherwise), so a
space can trade grouping for width as IGC suggests. Options are keyword-only; an unknown one
is an error that lists them.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from .arch import Arch, HeadSpec, LayerSpec
from .nets_dense import condensenet74
from .nets_igc import igc_resnet18
from .nets_mobile import mobilefacenet, mobilenet_v1, mobilenet_v2
from .nets_resnet import resnet18, resnet20, resnet50, resnext50
from .nets_shuffle import shufflenet_v1, shufflenet_v2
from .widths import scale_width

__all__ = ["BACKBONES", "get_backbone", "scale_width", "backbone_options"]


def _arch(input_shape, num_classes, stem_c, plan, op="conv", head="gap", width=1.0) -> Arch:
    """``plan``: rows of (out_channels, stride, residual, pool), one one-layer block each."""
    stem = LayerSpec("conv", scale_width(stem_c, width), 3, 1)
    layers = tuple(
        LayerSpec(op, scale_width(c, width), 3, s, residual=r, pool=p) for c, s, r, p in plan
    )
    return Arch(tuple(input_shape), num_classes, stem, layers, HeadSpec(head))  # type: ignore[arg-type]  # layers: one per stage


def small(input_shape=(1, 32, 32), num_classes=10, width=1.0) -> Arch:
    plan = [(32, 2, False, "none"), (32, 1, False, "none"), (64, 2, False, "none"),
            (64, 1, False, "none"), (128, 2, False, "none"), (128, 1, False, "none")]
    return _arch(input_shape, num_classes, 16, plan, width=width)


def vgg16(input_shape=(3, 32, 32), num_classes=10, width=1.0) -> Arch:
    cfg: list[int | str] = [64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    plan: list[tuple[int, int, bool, str]] = []
    for item in cfg:
        if isinstance(item, str):  # "M": a max pool after the last conv
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
    "small": small, "vgg16": vgg16, "resnet": resnet, "mobilenet": mobilenet,
    "resnet20": resnet20, "resnet18": resnet18, "resnet50": resnet50, "resnext50": resnext50,
    "mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2, "mobilefacenet": mobilefacenet,
    "shufflenet_v1": shufflenet_v1, "shufflenet_v2": shufflenet_v2,
    "condensenet74": condensenet74, "igc_resnet18": igc_resnet18,
}


def backbone_options(name: str) -> dict[str, Any]:
    """``{option: default}`` of backbone ``name`` (its keyword-only parameters)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    sig = inspect.signature(BACKBONES[name])
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def get_backbone(name: str, input_shape=(1, 32, 32), num_classes=10, width: float = 1.0, **options: Any) -> Arch:
    """The backbone ``name`` for this input shape and class count (``ValueError`` if impossible)."""
    allowed = backbone_options(name)
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(f"backbone '{name}' has no option {bad[0]!r}; its options: {', '.join(allowed) or 'none'}")
    if isinstance(width, bool) or not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    return BACKBONES[name](tuple(input_shape), num_classes, float(width), **options)
