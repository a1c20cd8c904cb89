"""The front as a text table (printed by ``search.run`` and ``search.report``)."""

from __future__ import annotations

from typing import Any

from .rundata import RunData, dominated_baselines, tie_groups, unchecked_claims, withdrawn_claims

__all__ = ["front_table", "latency_note", "confirm_note"]


def _fmt_int(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def latency_note(data: RunData) -> str:
    """Which input shape and runtime the latency column is for, and whether it was re-timed."""
    rt = data.retimed
    if rt:
        shape = "x".join(str(v) for v in rt.get("input_shape") or [])
        return (f"latency: ms at {shape} on {rt.get('runtime')}, batch {rt.get('batch')}, {rt.get('threads')} "
                "thread(s); front and baselines re-timed together in one interleaved round at the end")
    a = data.front[0]["attrs"] if data.front else {}
    shape = "x".join(str(v) for v in a.get("latency_shape") or []) or "the data's size"
    return (f"latency: ms at {shape} on {a.get('latency_runtime') or 'torch'} "
            f"({a.get('latency_source') or 'measured'}, per trial)")


def confirm_note(data: RunData) -> str | None:
    """What the confirmation round did to the claims (``search.confirm``), or None without one."""
    if data.confirm is None:
        return None
    def listed(claims: Any) -> str:
        return "; ".join(f"{r['number']}: {', '.join(c)}" for r in data.front for c in [claims(data, r)] if c)

    kept = sum(len(dominated_baselines(data, r)) for r in data.front)
    withdrawn, unchecked = listed(withdrawn_claims), listed(unchecked_claims)
    text = (f"dominates: claims re-checked by re-training both nets for {data.confirm.get('epochs')} epochs; "
            f"{kept} upheld")
    text += f", withdrawn (trial: baselines): {withdrawn}" if withdrawn else ", none withdrawn"
    why = "over --confirm-nets or --confirm-timeout" if data.confirm.get("timeout") else "over --confirm-nets"
    return text + (f"; not re-trained ({why}), so not stated: {unchecked}" if unchecked else "")


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
    lines.append(latency_note(data))
    note = confirm_note(data)
    if note:
        lines.append(note)
    if ties:
        lines.append("~N: latencies differ by less than their measured spread (IQR): a tie, no order claimed")
    if data.hv is not None:
        ref = ", ".join(f"{o} {v:.4g}" for o, v in zip(data.objectives, data.natural(data.ref or [])))
        lines.append(f"hypervolume {data.hv:.6g} (reference point: {ref})")
    return "\n".join(lines)


