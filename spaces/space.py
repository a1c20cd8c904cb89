"""The ``Space`` base: a backbone whose searched layers each choose among op families.

A space is data, in the spirit of NNI's ``nni/mutable`` (a space can validate a sample and
name the bad choice) without its machinery: Optuna runs the trials.

Vocabulary
----------
- ``LayerShape``: what a layer's choices may depend on (channels, stride, feature map, the
  backbone's kernel), and nothing else: choices are computed from the shape, never found by
  trial and error.
- ``LayerOp``: one concrete layer (op name, kernel size, op params), i.e. what goes into a
  ``LayerSpec``.
- ``Option``: a ``LayerOp`` plus the ordered ``choice`` pairs that select it, e.g.
  ``(("kernel_size", 3), ("groups", 4), ("shuffle", True))``.
- ``Family`` (the extension point): ``options(shape) -> list[Option]`` for one op family, and
  ``baselines() -> {name: rule}`` where a rule maps a ``LayerShape`` to the ``LayerOp`` that the
  hand-designed net uses there (or ``None`` when it cannot).

How a space turns options into Optuna parameters
------------------------------------------------
Per layer, the options of all families (in a space with several families each choice is
prefixed by ``("op", family.name)``; with a searched width multiplier by ``("width", w)``) form
a tree, one choice key per level. A level with one value is fixed (not suggested); otherwise it
is ``trial.suggest_categorical(name, values)``. So the parameters are define-by-run: in
``mixed`` only the chosen family's keys are suggested. Names are ``layer{i}.{key}``
(``layer3.groups``, ``layer3.igc_L``, ``layer3.op``); the global width is ``width``. Optuna needs
one fixed choice list per name, so when a key's values depend on an earlier choice, the most
common list keeps the plain name and each other list gets the shortest qualifier that tells it
apart: ``layer3.bottleneck_g|bottleneck_r=2``, ``layer0.groups|width=1.5``.

Distinct options of a layer build distinct ``LayerSpec`` s: families emit canonical forms
(``groups=1`` is ``conv``; a shuffle only where it moves channels; HetConv ``P=1`` is ``conv``;
a 3x3 "stacked" into one 3x3 is ``conv``; IGC with ``L = C_in = C_out``, ``M = 1`` is
``dwsep`` with ``linear=True``), and a space keeps the first of options that build the same layer. So ``size``
(sum over widths of the product over layers of the option counts) is the number of distinct
``Arch`` es. Functional equivalences between different modules are not merged (e.g. a
shuffle right before global pooling); the family modules document theirs.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

from .arch import Arch, LayerSpec
from .arch_shapes import kernel_fits
from .backbones import get_backbone
from .block_choices import BlockChoice, Unit, compose, same_skeleton
from .choice_tree import (
    ChoiceValue,
    Node as _Node,
    build_tree as _build,
    match_value as _match,
    name_nodes as _name_nodes,
    vkey as _vkey,
    walk_tree as _walk,
)
from .labels import layer_label, register_label
from .ops.registry import OpConfigError, validate_op
from .space_checks import SpaceError, check_kernels, check_widths, common_divisors, divisors
from .space_units import find_units, unit_values

__all__ = [
    "ChoiceValue", "LayerShape", "LayerOp", "Option", "Family", "BaselineRule", "Space", "SpaceError",
    "divisors", "common_divisors", "check_kernels", "check_widths", "layer_label", "register_label",
]

BaselineRule = Callable[["LayerShape"], "LayerOp | None"]


# -- the data a family works with --------------------------------------------------------------
@dataclass(frozen=True)
class LayerShape:
    """Everything a layer's choices may depend on. ``height``/``width`` are the input map's."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    kernel_size: int
    height: int
    width: int
    residual: bool = False
    position: tuple[int, int, int] = (0, 0, 0)  # (stage, block, layer in block); options must not use it


@dataclass(frozen=True)
class LayerOp:
    """One concrete layer op: what a ``LayerSpec`` holds besides widths, stride, shortcut, pool."""

    op: str
    kernel_size: int
    params: tuple[tuple[str, ChoiceValue], ...] = ()

    @staticmethod
    def of(op: str, kernel_size: int, **params: ChoiceValue) -> LayerOp:
        return LayerOp(op, kernel_size, tuple(sorted(params.items())))

    @staticmethod
    def from_spec(spec: LayerSpec) -> LayerOp:
        return LayerOp(spec.op, spec.kernel_size, tuple(spec.params))

    def apply(self, template: LayerSpec) -> LayerSpec:
        """``template`` (the backbone's layer) with this op, kernel and params."""
        return template.replace(op=self.op, kernel_size=self.kernel_size, params=dict(self.params))


@dataclass(frozen=True)
class Option:
    """A ``LayerOp`` and the ordered ``(key, value)`` choices that select it within its family."""

    choice: tuple[tuple[str, ChoiceValue], ...]
    layer: LayerOp

    @staticmethod
    def of(choice: Sequence[tuple[str, ChoiceValue]] | Mapping[str, ChoiceValue], op: str,
           kernel_size: int, **params: ChoiceValue) -> Option:
        """``Option.of({"kernel_size": 3, "groups": 4}, "group", 3, groups=4)``; dict order is kept."""
        pairs = tuple(choice.items()) if isinstance(choice, Mapping) else tuple(choice)
        return Option(pairs, LayerOp.of(op, kernel_size, **params))


class Family:
    """One op family's per-layer choices. Subclass it to add a family (the extension point).

    Override ``options`` (deterministic: a function of ``shape`` and the constructor settings;
    every option must pass ``validate_op``, which the space checks) and optionally
    ``baselines``. Choice keys should be unique to the family unless they mean the same thing
    (``kernel_size`` is shared); a key whose choice list differs across contexts gets a
    qualified parameter name automatically. ``name`` is the value of ``layerN.op`` in spaces
    with several families and must be unique among them.
    """

    name: ClassVar[str] = ""

    def __init__(self, kernels: Sequence[int] = (3,)) -> None:
        self.kernels = check_kernels(tuple(kernels))

    def options(self, shape: LayerShape) -> list[Option]:
        raise NotImplementedError

    def baselines(self) -> dict[str, BaselineRule]:
        """``{name: rule}``; a rule gives the ``LayerOp`` the hand-designed net uses at ``shape``."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernels={self.kernels})"


# -- the space ----------------------------------------------------------------------------
class Space:
    """A backbone whose non-stem layers each choose among the options of ``families``.

    ``backbone``: a name in ``spaces.BACKBONES`` or an ``Arch`` used as the template (then
    ``widths`` must be ``(1.0,)``). ``widths``: width multipliers searched as the global
    ``width`` parameter (``get_backbone(width=...)`` rounds channels to multiples of 8).

    Every layer of every block is searched. A 1x1 layer (a pointwise conv of a block) keeps
    kernel 1: its families are asked with ``kernels=(1,)`` and options that cannot be 1x1 are
    dropped. Kernels wider than a layer's input map (``kernel_fits``) are not offered.
    ``include_template`` (default: every named backbone but ``small``): where no family offers
    the backbone's own layer, it is added as the choice ``layerN.op = "backbone"``, so the
    paper's network is always a member and a baseline (named after the backbone).

    ``block_choices`` (``spaces.block_choices``): choices made once per block or stage
    (expansion ratio, projection groups, ShuffleNet's groups per stage). Each unit they find
    is one parameter (``block5.expand``), suggested before the layers; the unit's layers then
    choose from the shapes of its rewritten blocks (their trees have the unit's value as a
    level, fixed like ``width``), and layers the value sets are not searched.
    """

    def __init__(self, name: str, families: Sequence[Family], backbone: str | Arch = "small",
                 input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10,
                 widths: Sequence[float] = (1.0,), include_template: bool | None = None,
                 block_choices: Sequence[BlockChoice] = ()) -> None:
        if not families:
            raise SpaceError(f"space '{name}' needs at least one family")
        names = [f.name for f in families]
        if len(set(names)) != len(names) or not all(names):
            raise SpaceError(f"space '{name}': family names must be non-empty and unique, got {names}")
        self.name = name
        self.families = tuple(families)
        self.block_choices = tuple(block_choices)
        self.widths = check_widths(widths)
        if isinstance(backbone, Arch):
            if self.widths != (1.0,):
                raise SpaceError("option 'widths' needs a named backbone (a custom template has one width)")
            self.backbone_name = "custom"
            self.templates = {1.0: backbone}
        else:
            self.backbone_name = backbone
            self.templates = {w: get_backbone(backbone, tuple(input_shape), num_classes, width=w)
                              for w in self.widths}
            seen: dict[tuple[int, ...], float] = {}
            for w, t in self.templates.items():
                chans = tuple(l.out_channels for l in (t.stem, *t.layers))
                if chans in seen:
                    raise SpaceError(f"option 'widths': {seen[chans]} and {w} give the same channels {list(chans)} "
                                     "on this backbone; drop one")
                seen[chans] = w
        self.include_template = (self.backbone_name not in ("small", "custom") if include_template is None
                                 else bool(include_template))
        self._shapes = {w: self._compute_shapes(self.templates[w]) for w in self.widths}
        first = self.templates[self.widths[0]]
        self.input_shape = first.input_shape
        self.num_classes = first.num_classes
        self.n_layers = len(first.layers)
        self._multi = len(self.families) > 1
        self._units = find_units(self.name, self.templates, self.block_choices)
        self._global_keys = frozenset({"width"} | {u.name for us in self._units.values() for u in us})
        # per layer, all widths and unit values: leaf index -> option, width, unit value, path
        self._options: list[list[Option]] = []
        self._widx: list[list[float]] = []
        self._vidx: list[list[ChoiceValue | None]] = []
        self._paths: list[list[tuple[tuple[str, ChoiceValue], ...]]] = []
        self._trees: list[_Node | int] = []
        # (width, unit value) -> option count, per layer
        self._counts: dict[float, list[dict[ChoiceValue | None, int]]] = {w: [] for w in self.widths}
        self._variants = variants = {w: self._variant_shapes(w) for w in self.widths}
        for i in range(self.n_layers):
            opts, wid, vid, paths = [], [], [], []
            for w in self.widths:
                unit = self._unit_of(w, i)
                counts: dict[ChoiceValue | None, int] = {}
                for v in (unit.values if unit is not None else (None,)):
                    shape, template = variants[w][(i, v)]
                    if unit is not None and i - self._unit_layer0(w, unit) in unit.fixed:
                        layer_opts = [Option((), LayerOp.from_spec(template))]
                    else:
                        layer_opts = self._layer_options(shape, template)
                    counts[v] = len(layer_opts)
                    head: tuple[tuple[str, ChoiceValue], ...] = (("width", w),) if len(self.widths) > 1 else ()
                    if unit is not None:
                        assert v is not None, "a unit's values are choices"
                        head += ((unit.name, v),)
                    for o in layer_opts:
                        paths.append(head + o.choice)
                        opts.append(o)
                        wid.append(w)
                        vid.append(v)
                self._counts[w].append(counts)
            tree = _build(paths, list(range(len(paths))), 0, ())
            _name_nodes(tree, f"layer{i}", self._global_keys)
            self._options.append(opts)
            self._widx.append(wid)
            self._vidx.append(vid)
            self._paths.append(paths)
            self._trees.append(tree)
        self._lookup = [{(w, v, o.layer): j for j, (w, v, o) in enumerate(zip(self._widx[i], self._vidx[i],
                                                                            self._options[i]))}
                        for i in range(self.n_layers)]

    # -- construction ------------------------------------------------------------------
    def _compute_shapes(self, t: Arch) -> list[LayerShape]:
        out = []
        for i, (l, (c, h, w), pos) in enumerate(zip(t.layers, t.layer_inputs(), t.layer_positions())):
            block = t.stages[pos[0]][pos[1]]
            out.append(LayerShape(i, c, l.out_channels, l.stride, l.kernel_size, h, w,
                                  l.residual or block.shortcut != "none", pos))
        return out

    def _unit_layer0(self, width: float, unit: Unit) -> int:
        t = self.templates[width]
        return sum(len(b.layers) for b in t.blocks[:unit.first])

    def _unit_of(self, width: float, index: int) -> Unit | None:
        for u in self._units[width]:
            l0 = self._unit_layer0(width, u)
            if l0 <= index < l0 + u.n_layers:
                return u
        return None

    def _variant_shapes(self, width: float) -> dict[tuple[int, ChoiceValue | None], tuple[LayerShape, LayerSpec]]:
        """(layer, unit value) -> (shape, template layer): the template's, or the rewritten unit's."""
        t = self.templates[width]
        out: dict[tuple[int, ChoiceValue | None], tuple[LayerShape, LayerSpec]] = {
            (s.index, None): (s, t.layers[s.index]) for s in self._shapes[width]}
        for u in self._units[width]:
            l0 = self._unit_layer0(width, u)
            for v in u.values:
                arch = compose(t, dict(zip(range(u.first, u.first + len(u.blocks)), u.rewrite(v))))
                shapes = self._compute_shapes(arch)
                for i in range(l0, l0 + u.n_layers):
                    out[(i, v)] = (shapes[i], arch.layers[i])
        return out

    def units(self, width: float | None = None) -> list[Unit]:
        """The block-choice units at ``width`` (default: the first), in block order."""
        return list(self._units[self.widths[0] if width is None else width])

    def shapes(self, width: float | None = None) -> list[LayerShape]:
        """The ``LayerShape`` of every searched layer at ``width`` (default: the first), with the
        backbone's own block-choice values."""
        return list(self._shapes[self.widths[0] if width is None else width])

    def _layer_options(self, shape: LayerShape, template: LayerSpec) -> list[Option]:
        index = shape.index
        pointwise = template.kernel_size == 1
        found: list[tuple[str, Option]] = []
        seen: set[LayerOp] = set()
        for fam in self.families:
            if pointwise:
                fam = copy.copy(fam)
                fam.kernels = (1,)
            for o in fam.options(shape):
                try:
                    validate_op(o.layer.op, shape.in_channels, shape.out_channels, o.layer.kernel_size,
                                shape.stride, **dict(o.layer.params))
                except OpConfigError as err:
                    if pointwise:
                        continue
                    raise RuntimeError(f"family '{fam.name}' offered an impossible layer {o} "
                                       f"at {shape}: {err}") from None
                if o.layer in seen or not kernel_fits(o.layer.kernel_size, shape.height, shape.width):
                    continue  # the same layer as an earlier option (counted once), or too wide a kernel
                if pointwise and o.layer.kernel_size != 1:
                    continue
                seen.add(o.layer)
                found.append((fam.name, o))
        own = LayerOp.from_spec(template)
        add_template = self.include_template and own not in seen
        multi = self._multi or add_template
        out = [Option(((("op", f),) if multi else ()) + o.choice, o.layer) for f, o in found]
        if add_template:
            out.append(Option((("op", "backbone"),), own))
        if not out:
            raise SpaceError(f"space '{self.name}': layer {index} ({template.out_channels} channels) has no option")
        return out

    # -- size and enumeration ----------------------------------------------------------
    def _segments(self, width: float) -> list[tuple[Unit | None, list[int]]]:
        """The layers at ``width`` as (unit, its layers) and (None, [a free layer]) in order."""
        out: list[tuple[Unit | None, list[int]]] = []
        i = 0
        while i < self.n_layers:
            u = self._unit_of(width, i)
            n = u.n_layers if u is not None else 1
            out.append((u, list(range(i, i + n))))
            i += n
        return out

    def width_size(self, width: float) -> int:
        """The number of distinct ``Arch`` es at one width."""
        total = 1
        for u, layers in self._segments(width):
            values = u.values if u is not None else (None,)
            total *= sum(math.prod(self._counts[width][i][v] for i in layers) for v in values)
        return total

    @property
    def size(self) -> int:
        """The exact number of distinct ``Arch`` es: over widths and unit values, the product of
        the layers' option counts."""
        return sum(self.width_size(w) for w in self.widths)

    def layer_options(self, index: int, width: float | None = None) -> list[Option]:
        """Layer ``index``'s options at ``width`` (default: the first) and the backbone's own
        block-choice values, choices prefixed as sampled (without width and unit levels)."""
        w = self.widths[0] if width is None else width
        unit = self._unit_of(w, index)
        v = unit.own if unit is not None else None
        return [o for o, ow, ov in zip(self._options[index], self._widx[index], self._vidx[index])
                if ow == w and ov == v and (ov is None) == (v is None)]

    def iter_params(self) -> Iterator[dict[str, ChoiceValue]]:
        """Every parameter dict of the space (one per distinct Arch): only for small spaces."""
        for w in self.widths:
            parts = []
            for u, layers in self._segments(w):
                choices = []
                for v in (u.values if u is not None else (None,)):
                    per_layer = [[self._leaf_params(i, j) for j in range(len(self._options[i]))
                                  if self._widx[i][j] == w and self._vidx[i][j] == v] for i in layers]
                    head: dict[str, ChoiceValue] = {u.name: v} if u is not None and v is not None else {}
                    for combo in itertools.product(*per_layer):
                        d = dict(head)
                        for part in combo:
                            d.update(part)
                        choices.append(d)
                parts.append(choices)
            for combo in itertools.product(*parts):
                params: dict[str, ChoiceValue] = {"width": w} if len(self.widths) > 1 else {}
                for part in combo:
                    params.update(part)
                yield params

    def param_names(self) -> list[str]:
        """Every Optuna parameter name this space can suggest."""
        names = ["width"] if len(self.widths) > 1 else []
        for w in self.widths:
            names += [u.name for u in self._units[w] if u.name not in names]
        for tree in self._trees:
            for n in _walk(tree):
                if n.name and n.name not in names:
                    names.append(n.name)
        return names

    # -- trial <-> arch ----------------------------------------------------------------
    def _descend(self, index: int, fixed: Mapping[str, ChoiceValue],
                 choose: Callable[[str, list[ChoiceValue]], ChoiceValue]) -> int:
        node = self._trees[index]
        while isinstance(node, _Node):
            if node.key in fixed:
                v = fixed[node.key]
            elif len(node.values) == 1:
                v = node.values[0]
            else:
                v = choose(node.name, list(node.values))
            node = node.children[_vkey(v)]
        return node

    def _choose_all(self, choose: Callable[[str, list[ChoiceValue]], ChoiceValue]) -> tuple[float, dict, list[int]]:
        width = self.widths[0]
        if len(self.widths) > 1:
            width = choose("width", list(self.widths))  # type: ignore[assignment]
        fixed: dict[str, ChoiceValue] = {"width": width}
        for u in self._units[width]:
            fixed[u.name] = choose(u.name, list(u.values))
        return width, fixed, [self._descend(i, fixed, choose) for i in range(self.n_layers)]

    def _assemble(self, width: float, fixed: Mapping[str, ChoiceValue], leaves: Sequence[int]) -> Arch:
        t = self.templates[width]
        blocks: dict[int, Any] = {}
        for u in self._units[width]:
            blocks.update(zip(range(u.first, u.first + len(u.blocks)), u.rewrite(fixed[u.name])))
        shapes: dict[int, LayerSpec] = {}
        for u in self._units[width]:
            l0 = self._unit_layer0(width, u)
            rewritten = [l for b in u.rewrite(fixed[u.name]) for l in b.layers]
            shapes.update(zip(range(l0, l0 + u.n_layers), rewritten))
        layers = [self._options[i][j].layer.apply(shapes.get(i, t.layers[i])) for i, j in enumerate(leaves)]
        return compose(t, blocks, layers)

    def sample(self, trial: Any) -> Arch:
        """Draw an ``Arch`` with an Optuna trial (define-by-run: only reached params are suggested)."""
        width, fixed, leaves = self._choose_all(trial.suggest_categorical)
        return self._assemble(width, fixed, leaves)

    def arch_from_params(self, params: Mapping[str, Any]) -> Arch:
        """The ``Arch`` that ``sample`` built for a trial whose ``trial.params`` were ``params``."""
        if not isinstance(params, Mapping):
            raise SpaceError(f"params must be a dict of parameter values, got {type(params).__name__}")
        used: set[str] = set()

        def choose(name: str, values: list[ChoiceValue]) -> ChoiceValue:
            if name not in params:
                raise SpaceError(f"space '{self.name}': missing parameter '{name}' (choices: {values})")
            used.add(name)
            return _match(name, params[name], values)

        width, fixed, leaves = self._choose_all(choose)
        extra = sorted(set(params) - used)
        if extra:
            raise SpaceError(f"space '{self.name}': parameter(s) {extra} do not belong to this choice "
                             f"(space parameters look like {self.param_names()[:4]}...)")
        return self._assemble(width, fixed, leaves)

    def _leaf_params(self, index: int, leaf: int) -> dict[str, ChoiceValue]:
        target = self._paths[index][leaf]
        out: dict[str, ChoiceValue] = {}
        node = self._trees[index]
        for key, v in target:
            if not isinstance(node, _Node) or node.key != key:
                raise RuntimeError(f"choice tree of layer {index} does not hold {target}")
            if len(node.values) > 1 and key not in self._global_keys:
                out[node.name] = v
            node = node.children[_vkey(v)]
        return out

    def params_of(self, arch: Arch) -> dict[str, ChoiceValue]:
        """The parameter dict that yields ``arch``; ``SpaceError`` if ``arch`` is not in the space."""
        for w, t in self.templates.items():
            if len(arch.layers) != len(t.layers) or len(arch.blocks) != len(t.blocks):
                continue
            values = unit_values(self._units[w], arch)
            if values is None:
                continue
            in_units = {u.first + k for u in self._units[w] for k in range(len(u.blocks))}
            if not all(same_skeleton(t.blocks[b], arch.blocks[b]) for b in range(len(t.blocks))
                       if b not in in_units):
                continue
            ends = (arch.input_shape, arch.num_classes, arch.stem, arch.head)
            if ends != (t.input_shape, t.num_classes, t.stem, t.head):
                continue
            params: dict[str, ChoiceValue] = {"width": w} if len(self.widths) > 1 else {}
            params.update(values)
            for i, layer in enumerate(arch.layers):
                unit = self._unit_of(w, i)
                v = values[unit.name] if unit is not None else None
                j = self._lookup[i].get((w, v, LayerOp.from_spec(layer)))
                if j is None:
                    raise SpaceError(f"space '{self.name}': layer {i} ({layer_label(layer)}) is not a choice here")
                params.update(self._leaf_params(i, j))
            return params
        raise SpaceError(f"space '{self.name}': the arch does not have this space's backbone "
                         f"({self.backbone_name}, widths {list(self.widths)})")

    # -- baselines ---------------------------------------------------------------------
    def baseline_params(self) -> dict[str, dict[str, ChoiceValue]]:
        """``{name: params}`` of the families' hand-designed nets that are members of this space.

        Built at width 1.0 when searched (else the first width), with every block choice at the
        backbone's own value, except a unit whose value sets layers (ShuffleNet's groups per
        stage): there the first value whose set layers are the rule's. A baseline is left out
        when some layer cannot take it (its rule gives ``None``) or the space does not offer it.
        On a 1x1 layer a rule's op is taken at kernel 1, or the backbone's own layer where that
        is not a choice (HetConv's P applies to the K x K convs). With ``include_template`` the
        backbone itself is a baseline, named after it unless another baseline is the same net.
        """
        w = 1.0 if 1.0 in self.widths else self.widths[0]
        out: dict[str, dict[str, ChoiceValue]] = {}
        for fam in self.families:
            for bname, rule in fam.baselines().items():
                if bname in out:
                    continue
                params: dict[str, ChoiceValue] = {"width": w} if len(self.widths) > 1 else {}
                for unit, layers in self._segments(w):
                    values = (None,) if unit is None else unit.values if unit.fixed else (unit.own,)
                    got = next((g for g in (self._rule_params(w, unit, v, layers, rule) for v in values)
                                if g is not None), None)
                    if got is None:
                        break
                    params.update(got)
                else:  # every segment can take the baseline
                    out[bname] = params
        if self.include_template and self.backbone_name not in out:
            own = self.params_of(self.templates[w])  # a member: include_template adds its layers
            if own not in out.values():
                out[self.backbone_name] = own
        return out

    def _rule_params(self, w: float, unit: Unit | None, v: ChoiceValue | None, layers: list[int],
                     rule: BaselineRule) -> dict[str, ChoiceValue] | None:
        """The params of ``layers`` (a unit at value ``v``, or one free layer) under ``rule``."""
        out: dict[str, ChoiceValue] = {unit.name: v} if unit is not None and v is not None else {}
        for i in layers:
            shape, template = self._variants[w][(i, v)]
            own = LayerOp.from_spec(template)
            target = rule(shape)
            if target is not None and shape.kernel_size == 1:  # a pointwise layer stays 1x1,
                target = LayerOp(target.op, 1, target.params)
            if unit is not None and i - self._unit_layer0(w, unit) in unit.fixed:
                if target != own:  # the unit's value sets this layer: it must be the rule's
                    return None
            elif target is not None and shape.kernel_size == 1 and (w, v, target) not in self._lookup[i]:
                target = own  # else keeps the backbone's op
            j = None if target is None else self._lookup[i].get((w, v, target))
            if j is None:
                return None
            out.update(self._leaf_params(i, j))
        return out

    def baselines(self) -> dict[str, Arch]:
        """``{name: Arch}``: the hand-designed nets of the literature in this space."""
        return {k: self.arch_from_params(p) for k, p in self.baseline_params().items()}

    # -- reporting ---------------------------------------------------------------------
    def layer_choices(self, arch: Arch) -> dict[str, str]:
        """A short label per searched layer, e.g. ``{"layer0": "igc L4 M8 k3", ...}``."""
        return {f"layer{i}": layer_label(l) for i, l in enumerate(arch.layers)}

    def describe(self) -> str:
        """A table of the searched layers (grouped by block), their choices and counts, and the size."""
        from .space_describe import describe_space

        return describe_space(self)

    def __repr__(self) -> str:
        return f"Space({self.name!r}, backbone={self.backbone_name!r}, size={self.size})"
