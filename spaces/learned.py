"""The ``learned`` space: per layer, a learned-grouping op and its group count / condensation
factor / gate budget, against the fixed group conv as the control.

Families (each also part of ``mixed``):

- ``condense`` (CondenseNet, Huang et al., CVPR 2018): ``condense_groups`` G in
  ``CONDENSE_GROUPS`` dividing C_out, then ``condense_factor`` C in ``CONDENSE_FACTORS``
  dividing C_in. Condensed cost: C_out * C_in / C * K^2 params (G only sets the groups).
- ``flgc`` (FLGC, Wang et al., CVPR 2019): ``flgc_groups`` in ``LEARNED_GROUPS`` dividing both
  widths. Hardened cost: C_out * C_in / G * K^2.
- ``dgc`` (DGC, Zhang et al., ICCV 2019): ``dgc_groups``, the gate budget (target group count),
  a power of two in ``LEARNED_GROUPS`` up to min(C_in, C_out); only offered where both widths
  are powers of two. Realised cost: C_out * C_in / G' * K^2, G' the learned group count.
- ``group`` (the fixed control, from ``spaces.groups``; option ``fixed=False`` drops it): every
  group count dividing both widths, with or without a shuffle; ``groups=1`` is ``conv``.

With several families the first parameter of a layer is ``layerN.op``. Options of different
families are different ops, so nothing is merged: per layer the count is
(fixed group options) + |G| * |C| + |flgc groups| + |dgc budgets|, per kernel size.

Baselines: ``condense-G4`` (G = C = 4 on every layer, the paper's setting), ``flgc-G4``,
``dgc-G4`` (budget 4), and with the control the fixed nets ``dense``, ``group-g2/g4/g8`` (and
``-shuffle``). ``group-g4`` has exactly the condensed MACs of ``condense-G4``, ``flgc-G4`` and
``dgc-G4`` (at its budget): the search answers whether learning the grouping beats fixing it.
Latency, params and MACs of a learned trial are those of the condensed model (the training
proxy condenses; see ``spaces.ops.base``).
"""

from __future__ import annotations

from typing import Any, Sequence

from .block_choices import make_block_choices
from .groups import GroupFamily
from .space import BaselineRule, Family, LayerOp, LayerShape, Option, Space, SpaceError

__all__ = ["CondenseFamily", "FLGCFamily", "DGCFamily", "learned_space",
           "CONDENSE_GROUPS", "CONDENSE_FACTORS", "LEARNED_GROUPS"]

CONDENSE_GROUPS = (1, 2, 4, 8)  # G = 1: one learned input subset shared by all filters
CONDENSE_FACTORS = (2, 4, 8)
LEARNED_GROUPS = (2, 4, 8, 16)


def _pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _base_kernel(kernels: tuple[int, ...]) -> int:
    return 3 if 3 in kernels else kernels[0]


class CondenseFamily(Family):
    """CondenseNet learned group conv: ``kernel_size`` -> ``condense_groups`` -> ``condense_factor``."""

    name = "condense"

    def options(self, shape: LayerShape) -> list[Option]:
        return [Option((("kernel_size", k), ("condense_groups", g), ("condense_factor", c)),
                       LayerOp.of("condense", k, groups=g, condense_factor=c))
                for k in self.kernels
                for g in CONDENSE_GROUPS if shape.out_channels % g == 0
                for c in CONDENSE_FACTORS if shape.in_channels % c == 0]

    def baselines(self) -> dict[str, BaselineRule]:
        k = _base_kernel(self.kernels)

        def rule(s: LayerShape) -> LayerOp | None:
            ok = s.out_channels % 4 == 0 and s.in_channels % 4 == 0
            return LayerOp.of("condense", k, groups=4, condense_factor=4) if ok else None
        return {"condense-G4": rule}


class FLGCFamily(Family):
    """FLGC: ``kernel_size`` -> ``flgc_groups``."""

    name = "flgc"

    def options(self, shape: LayerShape) -> list[Option]:
        return [Option((("kernel_size", k), ("flgc_groups", g)), LayerOp.of("flgc", k, groups=g))
                for k in self.kernels for g in LEARNED_GROUPS
                if shape.in_channels % g == 0 and shape.out_channels % g == 0]

    def baselines(self) -> dict[str, BaselineRule]:
        k = _base_kernel(self.kernels)

        def rule(s: LayerShape) -> LayerOp | None:
            ok = s.in_channels % 4 == 0 and s.out_channels % 4 == 0
            return LayerOp.of("flgc", k, groups=4) if ok else None
        return {"flgc-G4": rule}


class DGCFamily(Family):
    """DGC: ``kernel_size`` -> ``dgc_groups`` (the gate budget); power-of-two widths only."""

    name = "dgc"

    @staticmethod
    def budgets(shape: LayerShape) -> list[int]:
        if not (_pow2(shape.in_channels) and _pow2(shape.out_channels)):
            return []
        return [g for g in LEARNED_GROUPS if _pow2(g) and g <= min(shape.in_channels, shape.out_channels)]

    def options(self, shape: LayerShape) -> list[Option]:
        return [Option((("kernel_size", k), ("dgc_groups", g)), LayerOp.of("dgc", k, groups=g))
                for k in self.kernels for g in self.budgets(shape)]

    def baselines(self) -> dict[str, BaselineRule]:
        k = _base_kernel(self.kernels)
        return {"dgc-G4": lambda s: LayerOp.of("dgc", k, groups=4) if 4 in self.budgets(s) else None}


def learned_space(backbone: Any = "small", input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10, *,
                  widths: Sequence[float] = (1.0,), kernels: Sequence[int] = (3,), fixed: bool = True,
                  block_choices: Sequence[str] = ("expand",)) -> Space:
    """The ``learned`` space (see the module docstring); ``fixed`` keeps the fixed group control."""
    if not isinstance(fixed, bool):
        raise SpaceError(f"option 'fixed' must be true or false, got {fixed!r}")
    families: list[Family] = [CondenseFamily(kernels), FLGCFamily(kernels), DGCFamily(kernels)]
    if fixed:
        families.insert(0, GroupFamily(kernels))
    return Space("learned", families, backbone, input_shape, num_classes, widths,
                 block_choices=make_block_choices(block_choices))

