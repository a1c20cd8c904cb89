"""The choice tree of one layer and how its levels become Optuna parameter names.

See ``spaces.space`` for the naming rules: one choice key per level; a level with one value is
fixed; the most common choice list of a key keeps the plain name ``layerN.key``, others get the
shortest qualifier that tells them apart (``layer3.bottleneck_g|bottleneck_r=2``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from .space_checks import SpaceError

ChoiceValue = int | float | bool | str

__all__ = ["Node", "vkey", "fmt", "build_tree", "walk_tree", "name_nodes", "match_value"]


@dataclass
class _Node:
    """One choice level: ``key`` picks among ``children`` (value -> subtree or leaf index)."""

    key: str
    path: tuple[tuple[str, ChoiceValue], ...]
    children: dict[Any, _Node | int] = field(default_factory=dict)
    values: list[ChoiceValue] = field(default_factory=list)
    name: str = ""  # Optuna parameter name; "" when fixed (one value) or global
    qpath: tuple[tuple[str, ChoiceValue], ...] = ()  # the informative part of ``path``


def _vkey(v: ChoiceValue) -> tuple[str, ChoiceValue]:
    """Dict key that keeps True apart from 1 and 1.0."""
    return (type(v).__name__, v)


def _fmt(v: ChoiceValue) -> str:
    return str(v)


def _build(paths: list[tuple[tuple[str, ChoiceValue], ...]], ids: list[int], depth: int,
           prefix: tuple[tuple[str, ChoiceValue], ...], qprefix: tuple[tuple[str, ChoiceValue], ...] = ()
           ) -> _Node | int:
    """The choice tree of ``paths[ids]`` below ``depth``; leaves are indices into ``paths``."""
    ended = [i for i in ids if len(paths[i]) == depth]
    if ended:
        if len(ids) != 1:
            clash = [paths[i] for i in ids]
            raise RuntimeError(f"family bug: choices {clash} are not a prefix-free set of distinct paths")
        return ids[0]
    keys = {paths[i][depth][0] for i in ids}
    if len(keys) != 1:
        raise RuntimeError(f"family bug: after {prefix} the next choice key differs: {sorted(keys)}")
    node = _Node(key=keys.pop(), path=prefix, qpath=qprefix)
    groups: dict[Any, list[int]] = {}
    for i in ids:
        v = paths[i][depth][1]
        if _vkey(v) not in groups:
            groups[_vkey(v)] = []
            node.values.append(v)
        groups[_vkey(v)].append(i)
    informative = len(node.values) > 1 or node.key == "width"
    for v in node.values:
        q = qprefix + ((node.key, v),) if informative else qprefix
        node.children[_vkey(v)] = _build(paths, groups[_vkey(v)], depth + 1, prefix + ((node.key, v),), q)
    return node


def _walk(node: _Node | int) -> Iterator[_Node]:
    if isinstance(node, _Node):
        yield node
        for c in node.children.values():
            yield from _walk(c)


def _name_nodes(root: _Node | int, prefix: str, global_keys: frozenset[str]) -> None:
    """Give each suggested node its Optuna name (see the module docstring)."""
    by_key: dict[str, list[_Node]] = {}
    for n in _walk(root):
        if n.key in global_keys:
            n.name = n.key
        elif len(n.values) > 1:
            by_key.setdefault(n.key, []).append(n)
    for key, nodes in by_key.items():
        sig = [tuple(_vkey(v) for v in n.values) for n in nodes]
        counts = Counter(sig)  # the most common choice list keeps the plain name (first on ties)
        top = max(counts.values())
        majority = next(s for s in sig if counts[s] == top)
        for n, s in zip(nodes, sig):
            if s == majority:
                n.name = f"{prefix}.{key}"
                continue
            for length in range(1, len(n.qpath) + 1):
                suffix = n.qpath[-length:]
                if all(s2 == s for n2, s2 in zip(nodes, sig) if n2.qpath[-length:] == suffix):
                    break
            n.name = f"{prefix}.{key}|" + ",".join(f"{k}={_fmt(v)}" for k, v in suffix)


def _match(name: str, value: Any, values: list[ChoiceValue]) -> ChoiceValue:
    """``value`` as one of ``values`` (strict about bool vs int); ``SpaceError`` otherwise."""
    for v in values:
        if isinstance(v, bool) or isinstance(value, bool):
            if isinstance(v, bool) and isinstance(value, bool) and v == value:
                return v
        elif type(v) is type(value) and v == value:
            return v
        elif isinstance(v, float) and isinstance(value, int) and float(value) == v:
            return v
    raise SpaceError(f"parameter '{name}' = {value!r} is not a choice; choices: {values}")


Node = _Node
vkey, fmt, build_tree, walk_tree, name_nodes, match_value = _vkey, _fmt, _build, _walk, _name_nodes, _match
