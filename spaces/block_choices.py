"""Choices made once per block or per stage, where the papers make them (``Space(block_choices=...)``).

A ``BlockChoice`` finds the ``Unit`` s of a backbone it applies to (a block, or a stage of
blocks) and rewrites a unit for each value; the space suggests one parameter per unit
(``block5.expand``, ``stage1.groups``) before the layers' own choices, and the layers of the
unit then choose from the shapes of the rewritten blocks. The backbone's own value is always
one of the values, so the paper's network stays a member and a baseline. A unit keeps its
number of layers, its strides and its output channels, so no other block changes.

- ``expand`` (MobileNetV2, Sandler et al., CVPR 2018, Sec. 4 and Table 1: the inverted
  residual's expansion factor t; 6 in the paper, 2 and 4 in MobileFaceNet): every block shaped
  1x1 expand (with act) -> K x K depthwise (with act) -> 1x1 linear projection, t in
  ``EXPANSIONS`` plus the backbone's own. The expansion width is t * C_in; the depthwise conv
  follows it.
- ``proj_groups`` (IGC, Zhang et al., ICCV 2017, the ImageNet networks: a grouped 1x1 shortcut
  projection instead of a dense one): every block with a projection shortcut, groups in
  ``PROJ_GROUPS`` that divide both widths, plus the backbone's own. params of the projection
  C_in * C_out / g.
- ``groups`` (ShuffleNet, Zhang et al., CVPR 2018, Sec. 3.3 and Table 1: one group number g per
  network, here per stage): every stage of ShuffleNet units (1x1 -> depthwise without act ->
  1x1 without act, an act after the combination). Both 1x1 convs of each unit get g groups,
  the first followed by the channel shuffle, except the first 1x1 of the first such stage (the
  paper keeps it dense: its input is narrow). g in ``SHUFFLE_GROUPS`` dividing every width it
  splits, plus the backbone's own; the widths stay the backbone's (Table 1's column for its g).
  These 1x1 layers are set by the stage's choice (``Unit.fixed``); the depthwise convs keep
  their per-layer choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

from .arch import Arch, BlockSpec, LayerSpec
from .choice_tree import ChoiceValue
from .space_checks import SpaceError

__all__ = ["BlockChoice", "Unit", "Expansion", "ProjectionGroups", "StageGroups", "BLOCK_CHOICES",
           "EXPANSIONS", "PROJ_GROUPS", "SHUFFLE_GROUPS", "make_block_choices", "compose", "same_skeleton"]

EXPANSIONS = (3, 6)  # MobileNetV2's t = 6 and a narrower 3 (the pair MnasNet / ProxylessNAS search)
PROJ_GROUPS = (1, 2, 4, 8)
SHUFFLE_GROUPS = (1, 2, 3, 4, 8)  # ShuffleNet Table 1's columns


@dataclass(frozen=True)
class Unit:
    """Blocks ``first .. first + len(blocks) - 1`` (global block indices) and their rewrites.

    ``name`` is the parameter (``block5.expand``); ``values`` start with the backbone's own
    (``own``); ``rewrite(v)`` gives the unit's blocks for value ``v``; ``fixed`` are the layer
    offsets within the unit that the value sets (the families do not search them)."""

    name: str
    first: int
    blocks: tuple[BlockSpec, ...]
    values: tuple[ChoiceValue, ...]
    own: ChoiceValue
    rewrite: Callable[[ChoiceValue], tuple[BlockSpec, ...]] = field(compare=False)
    fixed: frozenset[int] = frozenset()

    @property
    def n_layers(self) -> int:
        return sum(len(b.layers) for b in self.blocks)


class BlockChoice:
    """One kind of block-level choice (the extension point): ``units(arch)``."""

    key: ClassVar[str] = ""

    def units(self, arch: Arch) -> list[Unit]:
        raise NotImplementedError


def _block_inputs(arch: Arch) -> list[int]:
    """Input channels of every block."""
    return [s[0] for s in arch.feature_shapes()[:-1]]


def _is_depthwise(layer: LayerSpec, channels: int) -> bool:
    return layer.op == "group" and layer.p.get("groups") == channels == layer.out_channels


def _values(own: ChoiceValue, candidates: Sequence[ChoiceValue]) -> tuple[ChoiceValue, ...]:
    return (own,) + tuple(v for v in candidates if v != own)


class Expansion(BlockChoice):
    """MobileNetV2's expansion factor per inverted residual block."""

    key = "expand"

    def units(self, arch: Arch) -> list[Unit]:
        out = []
        for b, (block, cin) in enumerate(zip(arch.blocks, _block_inputs(arch))):
            ls = block.layers
            if not (len(ls) == 3 and ls[0].kernel_size == 1 and ls[0].op == "conv" and ls[0].act != "none"
                    and _is_depthwise(ls[1], ls[0].out_channels) and ls[1].act != "none"
                    and ls[2].kernel_size == 1 and ls[2].act == "none" and block.act == "none"
                    and not block.split and ls[0].out_channels % cin == 0):
                continue
            own = ls[0].out_channels // cin
            values = _values(own, sorted(set(EXPANSIONS)))

            def rewrite(t: ChoiceValue, block: BlockSpec = block, cin: int = cin) -> tuple[BlockSpec, ...]:
                mid = cin * int(t)
                a, dw, c = block.layers
                dw = dw.replace(out_channels=mid, params={**dw.p, "groups": mid})
                return (block.replace(layers=(a.replace(out_channels=mid), dw, c)),)

            out.append(Unit(f"block{b}.{self.key}", b, (block,), values, own, rewrite))
        return out


class ProjectionGroups(BlockChoice):
    """Dense or grouped 1x1 projection shortcut per block (IGC's ImageNet networks)."""

    key = "proj_groups"

    def units(self, arch: Arch) -> list[Unit]:
        out = []
        for b, (block, cin) in enumerate(zip(arch.blocks, _block_inputs(arch))):
            if block.shortcut != "projection":
                continue
            cout = arch.feature_shapes()[b + 1][0] if block.combine == "add" else None
            if cout is None:
                continue
            ok = [g for g in PROJ_GROUPS if cin % g == 0 and cout % g == 0]
            values = _values(block.proj_groups, ok)

            def rewrite(g: ChoiceValue, block: BlockSpec = block) -> tuple[BlockSpec, ...]:
                return (block.replace(proj_groups=int(g)),)

            out.append(Unit(f"block{b}.{self.key}", b, (block,), values, block.proj_groups, rewrite))
        return out


def _shuffle_unit(block: BlockSpec, cin: int) -> bool:
    ls = block.layers
    return (len(ls) == 3 and ls[0].kernel_size == 1 and ls[0].op in ("conv", "group")
            and _is_depthwise(ls[1], ls[0].out_channels) and ls[1].act == "none"
            and ls[2].kernel_size == 1 and ls[2].op in ("conv", "group") and ls[2].act == "none"
            and block.act != "none" and block.shortcut in ("identity", "avgpool") and not block.split)


def _pointwise(layer: LayerSpec, g: int, shuffle: bool) -> LayerSpec:
    if g == 1:
        return layer.replace(op="conv", params={})
    return layer.replace(op="group", params={"groups": g, "shuffle": shuffle})


class StageGroups(BlockChoice):
    """ShuffleNet's group number per stage of ShuffleNet units."""

    key = "groups"

    def units(self, arch: Arch) -> list[Unit]:
        out, first_stage, b0 = [], True, 0
        inputs = _block_inputs(arch)
        for s, stage in enumerate(arch.stages):
            ins = inputs[b0:b0 + len(stage)]
            if all(_shuffle_unit(b, c) for b, c in zip(stage, ins)):
                own = stage[0].layers[2].p.get("groups", 1)
                dense_first = first_stage  # ShuffleNet Sec. 3.3: stage 2's first 1x1 stays dense
                widths = []  # every width a group conv of the stage splits
                for j, (blk, c) in enumerate(zip(stage, ins)):
                    mid, last = blk.layers[0].out_channels, blk.layers[2].out_channels
                    widths += [mid, last] + ([] if dense_first and j == 0 else [c])
                ok = [g for g in SHUFFLE_GROUPS if all(w % g == 0 for w in widths)]
                values = _values(own, ok)

                def rewrite(g: ChoiceValue, stage: tuple = stage, dense_first: bool = dense_first
                            ) -> tuple[BlockSpec, ...]:
                    g = int(g)
                    blocks = []
                    for j, blk in enumerate(stage):
                        a, dw, c = blk.layers
                        g1 = 1 if dense_first and j == 0 else g
                        blocks.append(blk.replace(layers=(_pointwise(a, g1, g1 > 1), dw, _pointwise(c, g, False))))
                    return tuple(blocks)

                fixed = frozenset(i for j in range(len(stage)) for i in (3 * j, 3 * j + 2))
                out.append(Unit(f"stage{s}.{self.key}", b0, stage, values, own, rewrite, fixed))
                first_stage = False
            b0 += len(stage)
        return out


BLOCK_CHOICES: dict[str, type[BlockChoice]] = {c.key: c for c in (Expansion, ProjectionGroups, StageGroups)}


def make_block_choices(names: Sequence[str]) -> list[BlockChoice]:
    """The block choices named by a space's ``block_choices`` option (``SpaceError`` for an
    unknown name, listing the known ones)."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise SpaceError(f"option 'block_choices' must be a list of names, got {names!r}")
    bad = [n for n in names if n not in BLOCK_CHOICES]
    if bad:
        raise SpaceError(f"option 'block_choices': unknown {bad[0]!r}; known: {', '.join(BLOCK_CHOICES)}")
    return [BLOCK_CHOICES[n]() for n in dict.fromkeys(names)]


def compose(template: Arch, blocks: dict[int, BlockSpec], layers: list[LayerSpec] | None = None) -> Arch:
    """``template`` with the blocks at the given (global) indices replaced, then (``layers``) every
    main-path layer replaced in order; one validation."""
    it = iter(layers) if layers is not None else None
    stages, b = [], 0
    for stage in template.stages:
        new = []
        for blk in stage:
            blk = blocks.get(b, blk)
            if it is not None:
                blk = blk.replace(layers=tuple(next(it) for _ in blk.layers))
            new.append(blk)
            b += 1
        stages.append(tuple(new))
    return Arch(template.input_shape, template.num_classes, template.stem, tuple(stages), template.head)


def same_skeleton(template: BlockSpec, block: BlockSpec) -> bool:
    """Whether ``block`` is ``template`` with only its layers' ops, kernels and params changed."""
    if len(template.layers) != len(block.layers):
        return False
    layers = tuple(t.replace(op=b.op, kernel_size=b.kernel_size, params=b.p)
                   for t, b in zip(template.layers, block.layers))
    return template.replace(layers=layers) == block
