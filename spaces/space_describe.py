"""``describe_space``: the table of a space's layers (grouped by block), choices, counts and size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .arch import LayerSpec
from .choice_tree import fmt as _fmt
from .labels import block_summary, layer_label

if TYPE_CHECKING:
    from .space import Option

__all__ = ["describe_space"]


def describe_space(self: Any) -> str:
    """See ``Space.describe``."""
    lines = [f"space '{self.name}' on backbone '{self.backbone_name}' "
             f"(input {tuple(self.input_shape)}, {self.num_classes} classes); "
             f"families: {', '.join(f.name for f in self.families)}"]
    if len(self.widths) > 1:
        lines.append(f"width multiplier 'width': {list(self.widths)} (tables below at each width)")
    for w in self.widths:
        if len(self.widths) > 1:
            lines.append(f"-- width {w}")
        t = self.templates[w]
        lines.append(f"stem: conv {t.stem.kernel_size}x{t.stem.kernel_size} -> {t.stem.out_channels} (fixed)")
        table = [(s, self.layer_options(s.index, w)) for s in self.shapes(w)]
        table_rows = [_summarise(opts, opts[0].choice[:1][0][0] == "op" if opts[0].choice else False)
                      for _, opts in table]
        cw = max(len(r) for rows in table_rows for r in rows) + 2
        lines.append(f"{'layer':<8}{'in->out':>10}{'s':>3}{'map':>8}  {'choices':<{cw}}{'count':>6}")
        starts = {u.first: u for u in self.units(w)}
        for (shape, opts), rows in zip(table, table_rows):
            st, bi, li = shape.position
            unit = starts.get(sum(len(stage) for stage in t.stages[:st]) + bi) if li == 0 else None
            if unit is not None:  # a block choice (spaces.block_choices), suggested before its layers
                lines.append(f"choice {unit.name}: {', '.join(_fmt(v) for v in unit.values)} "
                             f"(backbone: {_fmt(unit.own)}; {len(unit.blocks)} block(s); rows below at the "
                             f"backbone's value)")
            if li == 0 and (len(t.blocks) != len(t.layers) or t.blocks[0].shortcut != "none"):
                lines.append(f"stage {st} block {bi}: {block_summary(t.stages[st][bi])}")
            head = (f"layer{shape.index:<3}{f'{shape.in_channels}->{shape.out_channels}':>10}{shape.stride:>3}"
                    f"{f'{shape.height}x{shape.width}':>8}  ")
            for r, row in enumerate(rows):
                count = f"{len(opts):>6}" if r == 0 else ""
                lines.append(((head if r == 0 else " " * len(head)) + f"{row:<{cw}}{count}").rstrip())
        lines.append(f"product at width {w}: {self.width_size(w)}")
    lines.append(f"parameters: {len(self.param_names())} names, e.g. {', '.join(self.param_names()[:5])}")
    lines.append(f"baselines: {', '.join(self.baseline_params()) or 'none'}")
    lines.append(f"size: {self.size} distinct configurations (~{self.size:.3g})")
    return "\n".join(lines)


def _summarise(opts: list[Option], multi: bool) -> list[str]:
    """One row per family: ``fam (n): key=v1,v2 key=...``."""
    fams: dict[str, list[Option]] = {}
    for o in opts:
        fam = str(o.choice[0][1]) if multi else ""
        fams.setdefault(fam, []).append(o)
    rows = []
    for fam, group in fams.items():
        keys: dict[str, list[str]] = {}
        for o in group:
            for k, v in o.choice[1:] if multi else o.choice:
                vals = keys.setdefault(k, [])
                if _fmt(v) not in vals:
                    vals.append(_fmt(v))
        body = " ".join(f"{k}={','.join(v)}" for k, v in keys.items()) or ", ".join(
            layer_label(LayerSpec(o.layer.op, 1, o.layer.kernel_size, params=o.layer.params)) for o in group)
        rows.append((f"{fam} ({len(group)}): " if multi else "") + body)
    return rows
