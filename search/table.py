"""The front as a text table (printed by ``search.run`` and ``search.report``)."""

from __future__ import annotations

from typing import Any

from .rundata import RunData, dominated_baselines, tie_groups

__all__ = ["front_table"]


def _fmt_int(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def front_table(data: RunData) -> str:
    """The front as text: accuracy, latency (+- IQR), params, MACs, ties, baselines dominated."""
    if not data.front:
        return "no completed trial yet: the front is empty"
    ties = tie_groups(data.front)
    head = f"{'trial':>5}  {'accuracy':>8}  {'latency ms':>15}  {'params':>8}  {'MACs':>8}  {'tie':>3}  dominates"
    lines = [f"Pareto front ({len(data.front)} members" + (f", target {data.target}" if data.target else "")
             + f"; objectives {', '.join(data.objectives)})", head, "-" * len(head)]
    for r in sorted(data.front, key=lambda r: (r["attrs"].get("latency_ms") or 0.0)):
        a = r["attrs"]
        lat = a.get("latency_ms")
        lat_s = f"{lat:.3f} ±{(a.get('latency_iqr_ms') or 0.0):.3f}" if lat is not None else "-"
        acc = r["values"].get("accuracy", a.get("accuracy"))
        name = f" [{r['baseline']}]" if r["baseline"] else ""
        knee = " (knee)" if data.knee is not None and data.knee["number"] == r["number"] else ""
        tie = f"~{ties[r['number']]}" if r["number"] in ties else ""
        dom = ", ".join(dominated_baselines(data, r)) or "-"
        lines.append(f"{r['number']:>5}  {acc:>8.4f}  {lat_s:>15}  {_fmt_int(a.get('params')):>8}  "
                     f"{_fmt_int(a.get('macs')):>8}  {tie:>3}  {dom}{name}{knee}")
    if ties:
        lines.append("~N: latencies differ by less than their measured spread (IQR): a tie, no order claimed")
    if data.hv is not None:
        ref = ", ".join(f"{o} {v:.4g}" for o, v in zip(data.objectives, data.natural(data.ref or [])))
        lines.append(f"hypervolume {data.hv:.6g} (reference point: {ref})")
    return "\n".join(lines)


