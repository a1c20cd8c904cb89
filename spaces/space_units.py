"""The block-choice units of a space (``spaces.block_choices``): finding and naming them, and
telling which value of each unit an ``Arch`` has.

``find_units``: per width, the units of every block choice with two or more values, in block
order; no block may belong to two units. A unit's parameter name (``block5.expand``) is shared by
the widths where its values are the most common list; at a width where they differ it is
qualified, ``block5.expand|width=1.5`` (Optuna needs one choice list per name).
``unit_values``: the value of each unit whose rewrite has the arch's blocks, up to the layers'
ops, kernels and params, except the layers the value sets, which must match exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from .arch import Arch
from .block_choices import BlockChoice, Unit, same_skeleton
from .choice_tree import ChoiceValue, vkey
from .space_checks import SpaceError

__all__ = ["find_units", "unit_values"]


def _layer_key(layer) -> tuple:
    return (layer.op, layer.kernel_size, tuple(layer.params))


def find_units(space_name: str, templates: Mapping[float, Arch], choices: Sequence[BlockChoice]
               ) -> dict[float, list[Unit]]:
    """See the module docstring."""
    found: dict[float, list[Unit]] = {}
    for w, t in templates.items():
        units: list[Unit] = []
        claimed: dict[int, str] = {}
        for choice in choices:
            for u in choice.units(t):
                if len(u.values) < 2:
                    continue
                if u.rewrite(u.own) != u.blocks:
                    raise RuntimeError(f"block choice '{choice.key}': {u.name} at its own value "
                                       "does not give the backbone's blocks")
                for b in range(u.first, u.first + len(u.blocks)):
                    if b in claimed:
                        raise SpaceError(f"space '{space_name}': block choices {claimed[b]} and {u.name} "
                                         f"both rewrite block {b}")
                    claimed[b] = u.name
                units.append(u)
        found[w] = sorted(units, key=lambda u: u.first)
    by_name: dict[str, list[tuple[float, Unit]]] = {}
    for w, units in found.items():
        for u in units:
            by_name.setdefault(u.name, []).append((w, u))
    for name, entries in by_name.items():
        sigs = [tuple(vkey(v) for v in u.values) for _, u in entries]
        top = max(sigs, key=sigs.count)
        for (w, u), sig in zip(entries, sigs):
            if sig != top:
                found[w][found[w].index(u)] = dataclasses.replace(u, name=f"{name}|width={w}")
    return found


def unit_values(units: Sequence[Unit], arch: Arch) -> dict[str, ChoiceValue] | None:
    """See the module docstring; ``None`` when some unit has no such value."""
    out: dict[str, ChoiceValue] = {}
    for u in units:
        mine = arch.blocks[u.first:u.first + len(u.blocks)]
        have = [_layer_key(l) for b in mine for l in b.layers]
        for v in u.values:
            blocks = u.rewrite(v)
            want = [_layer_key(l) for b in blocks for l in b.layers]
            if all(same_skeleton(b, m) for b, m in zip(blocks, mine)) and all(want[k] == have[k] for k in u.fixed):
                out[u.name] = v
                break
        else:
            return None
    return out
