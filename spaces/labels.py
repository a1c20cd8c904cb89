"""Short labels for plots and tables: ``layer_label`` (one layer), ``block_summary`` (one block).

Each op of ``spaces.OPS`` has its label here (``LABELS``); ``register_label`` adds one for an op
defined elsewhere. Nothing registers at import time.
"""

from __future__ import annotations

from typing import Any, Callable

from .arch import LayerSpec

__all__ = ["LABELS", "register_label", "layer_label", "block_summary"]


def _group(spec: LayerSpec) -> str:
    p = spec.p
    return f"group g{p.get('groups', 1)}{' shuffle' if p.get('shuffle') else ''} k{spec.kernel_size}"


def _linear(spec: LayerSpec) -> str:
    """`` linear`` for an op asked for without its inner BN + ReLU (``spaces.ops.inner``)."""
    return " linear" if spec.p.get("linear") else ""


def _inception(spec: LayerSpec) -> str:
    p = spec.p
    r = p.get("reduction", 2)
    return ("inception" + ("" if p.get("pool_branch", True) else " no-pool") + (f" r{r}" if r != 2 else "")
            + _linear(spec))


LABELS: dict[str, Callable[[LayerSpec], str]] = {
    "conv": lambda spec: f"conv k{spec.kernel_size}",
    "group": _group,
    "dwsep": lambda spec: f"dwsep{_linear(spec)} k{spec.kernel_size}",
    "igc": lambda spec: f"igc L{spec.p['L']} M{spec.p['M']} k{spec.kernel_size}",
    "hetconv": lambda spec: f"hetconv P{spec.p['P']} k{spec.kernel_size}",
    "decomp": lambda spec: f"decomp {spec.p['mode']}{_linear(spec)} k{spec.kernel_size}",
    "inception": _inception,
    "bottleneck": lambda spec: f"bottleneck r{spec.p.get('reduction', 4)} g{spec.p.get('groups', 1)}"
                               f"{_linear(spec)} k{spec.kernel_size}",
    "condense": lambda spec: f"condense G{spec.p.get('groups')} C{spec.p.get('condense_factor')} k{spec.kernel_size}",
    "flgc": lambda spec: f"flgc g{spec.p.get('groups')} k{spec.kernel_size}",
    "dgc": lambda spec: f"dgc g{spec.p.get('groups')} k{spec.kernel_size}",
}


def register_label(op: str, fn: Callable[[LayerSpec], str]) -> None:
    """Give ``op`` a short plot label (``layer_choices``); others get ``op kK key=value``."""
    LABELS[op] = fn


def layer_label(spec: LayerSpec) -> str:
    """A short label for one layer, e.g. ``igc L4 M8 k3`` or ``group g4 shuffle k3``."""
    if spec.op in LABELS:
        return LABELS[spec.op](spec)
    parts = [spec.op]
    for k, v in spec.params:
        if isinstance(v, bool):
            parts.append(k if v else f"no-{k}")
        else:
            parts.append(f"{k}={v}")
    parts.append(f"k{spec.kernel_size}")
    return " ".join(parts)


def block_summary(block: Any) -> str:
    """One line for a ``BlockSpec``: layers, shortcut, combination, norm, act, shuffle, pool."""
    parts = [f"{len(block.layers)} layer{'s' if len(block.layers) > 1 else ''}", f"shortcut {block.shortcut}"]
    if block.shortcut == "projection" and block.proj_groups > 1:
        parts[-1] += f" (groups {block.proj_groups})"
    if block.shortcut == "branch":
        parts[-1] += " (" + " -> ".join(layer_label(l) for l in block.branch) + ")"
    if block.shortcut != "none":
        parts.append(block.combine)
    if block.split:
        parts.append("channel split")
    after = [x for x in (block.norm, block.act) if x != "none"]
    if after:
        parts.append("then " + " ".join(after))
    if block.shuffle > 1:
        parts.append(f"shuffle {block.shuffle}")
    if block.pool != "none":
        parts.append(f"{block.pool} pool")
    return ", ".join(parts)
