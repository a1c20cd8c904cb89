"""The ``mixed`` space: per layer, the op family itself, then that family's choices.

The union of ``conv`` (dense K x K), ``group`` (+ shuffle), ``dwsep`` (depthwise K x K, BN +
ReLU, pointwise 1x1: MobileNet, Howard et al., 2017, Fig. 3; params C_in*K^2 + C_in*C_out),
``igc``, ``hetconv``, ``decomp``, ``inception`` (1x1 | 1x1 -> 3x3 | 1x1 -> two 3x3 | [pool +
1x1], GoogLeNet Fig. 2b / Inception v3 Fig. 5), ``bottleneck`` (1x1 reduce by r, K x K with g
groups, 1x1 expand: ResNet / ResNeXt) and every family added with ``register_mixed_family``
(the learned-grouping ops). Per layer the first parameter is ``layerN.op``. The composite ops
are offered in their papers' form, BN + ReLU between their parts (``spaces.ops.inner``).

Counting: options that build the same layer are kept once, for the first family in
``MIXED_FAMILIES`` order (``conv`` first: ``group`` g=1, ``hetconv`` P=1, ``decomp`` none and
3x3 stack are the dense conv; ``igc`` L=C_in=C_out is the linear ``dwsep``, a different
network from the paper-form ``dwsep``). So ``size`` is the number of
distinct Archs and ``layerN.op`` never has two values that build the same layer. Functionally
close modules stay distinct (IGC L=1 = dense conv + a per-channel scale; an inception 3x3
branch is not a conv).
"""

from __future__ import annotations

from typing import Sequence

from .block_choices import make_block_choices
from .decomp import DecompFamily
from .groups import GroupFamily
from .hetconv import HetConvFamily
from .igc import IGCFamily
from .learned import CondenseFamily, DGCFamily, FLGCFamily
from .space import BaselineRule, Family, LayerOp, LayerShape, Option, Space, SpaceError, divisors

__all__ = ["ConvFamily", "DwsepFamily", "InceptionFamily", "BottleneckFamily", "MIXED_FAMILIES",
           "register_mixed_family", "mixed_space", "BOTTLENECK_REDUCTIONS"]

BOTTLENECK_REDUCTIONS = (2, 4)


class ConvFamily(Family):
    """Dense K x K conv: ``kernel_size``."""

    name = "conv"

    def options(self, shape: LayerShape) -> list[Option]:
        return [Option((("kernel_size", k),), LayerOp.of("conv", k)) for k in self.kernels]

    def baselines(self) -> dict[str, BaselineRule]:
        k = 3 if 3 in self.kernels else self.kernels[0]
        return {"dense": lambda s: LayerOp.of("conv", k)}


class DwsepFamily(Family):
    """Depthwise separable conv: ``kernel_size``."""

    name = "dwsep"

    def options(self, shape: LayerShape) -> list[Option]:
        return [Option((("kernel_size", k),), LayerOp.of("dwsep", k)) for k in self.kernels]

    def baselines(self) -> dict[str, BaselineRule]:
        k = 3 if 3 in self.kernels else self.kernels[0]
        return {"dwsep": lambda s: LayerOp.of("dwsep", k)}


class InceptionFamily(Family):
    """Inception mixed kernels (kernels fixed by the op): ``inception_pool``."""

    name = "inception"

    def options(self, shape: LayerShape) -> list[Option]:
        return [Option((("inception_pool", pool),), LayerOp.of("inception", 3, pool_branch=pool))
                for pool in (True, False) if shape.out_channels >= (4 if pool else 3)]

    def baselines(self) -> dict[str, BaselineRule]:
        return {"inception": lambda s: LayerOp.of("inception", 3, pool_branch=True) if s.out_channels >= 4 else None}


class BottleneckFamily(Family):
    """Bottleneck: ``kernel_size`` -> ``bottleneck_r`` (in ``reductions``, dividing C_out) ->
    ``bottleneck_g`` (every divisor of the reduced width C_out / r)."""

    name = "bottleneck"

    def __init__(self, kernels: Sequence[int] = (3,), reductions: Sequence[int] = BOTTLENECK_REDUCTIONS) -> None:
        super().__init__(kernels)
        self.reductions = tuple(reductions)

    def options(self, shape: LayerShape) -> list[Option]:
        out = []
        for k in self.kernels:
            for r in self.reductions:
                if shape.out_channels % r:
                    continue
                for g in divisors(shape.out_channels // r):
                    out.append(Option((("kernel_size", k), ("bottleneck_r", r), ("bottleneck_g", g)),
                                      LayerOp.of("bottleneck", k, reduction=r, groups=g)))
        return out

    def baselines(self) -> dict[str, BaselineRule]:
        k = 3 if 3 in self.kernels else self.kernels[0]
        return {"bottleneck": lambda s: LayerOp.of("bottleneck", k, reduction=4, groups=1)
                if s.out_channels % 4 == 0 else None}


# name -> Family subclass, constructed as cls(kernels=...); order decides which family keeps a
# layer that two families can build (see the module docstring).
MIXED_FAMILIES: dict[str, type[Family]] = {
    cls.name: cls for cls in (ConvFamily, GroupFamily, DwsepFamily, IGCFamily, HetConvFamily, DecompFamily,
                              InceptionFamily, BottleneckFamily, CondenseFamily, FLGCFamily, DGCFamily)
}


def register_mixed_family(cls: type[Family]) -> type[Family]:
    """Add a ``Family`` subclass to ``mixed`` (usable as a class decorator); its ``name`` must be new."""
    if not (isinstance(cls, type) and issubclass(cls, Family)) or not cls.name:
        raise TypeError(f"register_mixed_family needs a Family subclass with a name, got {cls!r}")
    if cls.name in MIXED_FAMILIES and MIXED_FAMILIES[cls.name] is not cls:
        raise ValueError(f"mixed family '{cls.name}' is registered twice")
    MIXED_FAMILIES[cls.name] = cls
    return cls


def mixed_space(backbone: str = "small", input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10, *,
                widths: Sequence[float] = (1.0,), kernels: Sequence[int] = (3, 5),
                families: Sequence[str] | None = None,
                block_choices: Sequence[str] = ("expand", "proj_groups")) -> Space:
    """The ``mixed`` space; ``families`` picks a subset of ``MIXED_FAMILIES`` (default: all)."""
    names = list(MIXED_FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in MIXED_FAMILIES]
    if unknown or not names:
        raise SpaceError(f"option 'families': unknown or empty {unknown or names}; known families: "
                         f"{', '.join(MIXED_FAMILIES)}")
    order = [n for n in MIXED_FAMILIES if n in names]
    return Space("mixed", [MIXED_FAMILIES[n](kernels=kernels) for n in order], backbone, input_shape,
                 num_classes, widths,
                 block_choices=make_block_choices(block_choices))
