"""Plots of a run: Pareto scatter (PNG and hover-able HTML), hypervolume over trials, layer map.

Each plot reads a ``rundata.RunData`` (all checks done there) and only draws. The scatter
is accuracy (up) against the first cost objective (latency when searched): dominated trials
grey, the front in red joined as a staircase, baselines as black crosses labelled by name,
the knee as a star, pruned trials (cost known, no final accuracy) as ticks on the cost axis;
the cost axis is logarithmic for params and MACs, and for latency when it spans over 5x.
With three or more objectives the front is the full multi-objective front
seen in two of them (members can then look dominated in the picture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["pareto_png", "pareto_html", "hypervolume_png", "layers_png"]

LABELS = {"accuracy": "validation accuracy", "latency": "latency (ms, median)", "params": "parameters",
          "macs": "multiply-adds"}


def _axes(data: Any) -> tuple[str, str]:
    y = "accuracy" if "accuracy" in data.objectives else data.objectives[0]
    x = next(o for o in data.objectives if o != y)
    return x, y


def _xy(rows: Sequence[dict[str, Any]], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in rows if x in r["values"] and y in r["values"]]
    return (np.array([r["values"][x] for r in rows], dtype=float),
            np.array([r["values"][y] for r in rows], dtype=float))


#: label offsets (points) tried in turn for a baseline's name: beside, above, below, further out
_OFFSETS = [(5, 4), (5, -11), (-5, 4), (-5, -11), (5, 14), (-5, 14), (5, -21), (-5, -21),
            (12, 24), (-12, 24), (12, -31), (-12, -31), (20, 34), (-20, 34), (20, -41), (-20, -41)]


def _label_points(ax: Any, fig: Any, names: Sequence[str], xs: np.ndarray, ys: np.ndarray) -> None:
    """Name each point without overlapping another name or leaving the axes.

    Greedy: points in x order, each takes the first offset in ``_OFFSETS`` whose text box is
    clear of the boxes placed so far; far offsets get a thin leader line.
    """
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for i in np.argsort(xs, kind="stable"):
        ann = None
        for dx, dy in _OFFSETS:
            if ann is not None:
                ann.remove()
            far = abs(dy) > 20
            ann = ax.annotate(names[i], (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy),
                              ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top",
                              fontsize=7, zorder=6,
                              bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
                              arrowprops=dict(arrowstyle="-", color="0.4", lw=0.6) if far else None)
            box = ann.get_window_extent(renderer)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(b) for b in placed):
                break
        if ann is not None:
            placed.append(ann.get_window_extent(renderer))


def pareto_png(path: Path, data: Any, title: str = "") -> None:
    x, y = _axes(data)
    complete = [r for r in data.rows if r["state"] == "COMPLETE" and r["values"]]
    if data.target:
        complete = [r for r in complete if r in data.front or r in data.baselines] or complete
    front_ids = {r["number"] for r in data.front}
    base_ids = {r["number"] for r in data.baselines}
    fig, ax = plt.subplots(figsize=(9.5, 5.5), dpi=110)
    dx, dy = _xy([r for r in complete if r["number"] not in front_ids | base_ids], x, y)
    ax.scatter(dx, dy, s=12, c="0.65", label=f"dominated ({len(dx)})", zorder=1)
    fx, fy = _xy(data.front, x, y)
    order = np.argsort(fx)
    ax.step(fx[order], fy[order], where="post", c="tab:red", lw=1, alpha=0.6, zorder=2)
    ax.scatter(fx, fy, s=28, c="tab:red", label=f"front ({len(fx)})", zorder=3)
    if data.knee is not None:
        kx, ky = _xy([data.knee], x, y)
        ax.scatter(kx, ky, s=160, marker="*", c="gold", edgecolors="black", label=f"knee (trial {data.knee['number']})",
                   zorder=5)
    if data.baselines:
        bx, by = _xy(data.baselines, x, y)
        ax.scatter(bx, by, s=50, marker="x", c="black", label=f"baselines ({len(bx)})", zorder=4)
    # pruned trials have a cost but no final accuracy: a tick on the cost axis each
    key = {"latency": "latency_ms", "params": "params", "macs": "macs"}.get(x)
    pruned = [float(r["attrs"][key]) for r in data.rows
              if r["state"] == "PRUNED" and key and r["attrs"].get(key) is not None and not data.target]
    if pruned:
        ax.scatter(pruned, np.zeros(len(pruned)), marker="|", s=90, c="tab:blue", alpha=0.6, zorder=2,
                   transform=ax.get_xaxis_transform(), clip_on=False,
                   label=f"pruned ({len(pruned)}): cost only")
        ax.dataLim.update_from_data_x(pruned, ignore=False)   # the x range holds the ticks too
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    xs_all = np.concatenate([_xy(complete, x, y)[0], np.array(pruned, dtype=float)])
    xs_all = xs_all[xs_all > 0]
    if x in ("params", "macs") or (len(xs_all) and xs_all.max() > 5 * xs_all.min()):
        ax.set_xscale("log")   # wide cost ranges: one slow outlier would squash the rest
        if x == "latency":     # plain numbers at 1, 2, 5 x 10^k ms rather than powers of ten only
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    hv = f", HV {data.hv:.4g}" if data.hv is not None else ""
    ax.set_title(f"{title}: {len(complete)} completed trials{hv}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.12)          # room for the names at the edges
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    if data.baselines:
        bx, by = _xy(data.baselines, x, y)
        names = [b["baseline"] for b in data.baselines if x in b["values"] and y in b["values"]]
        _label_points(ax, fig, names, bx, by)
    fig.savefig(path)
    plt.close(fig)


def _hover(r: dict[str, Any]) -> str:
    a = r["attrs"]
    parts = [f"trial {r['number']}" + (f" [{r['baseline']}]" if r["baseline"] else "")]
    if a.get("accuracy") is not None:
        parts.append(f"accuracy {a['accuracy']:.4f}")
    if a.get("latency_ms") is not None:
        parts.append(f"latency {a['latency_ms']:.3f} ± {a.get('latency_iqr_ms') or 0:.3f} ms")
    if a.get("params") is not None:
        parts.append(f"params {a['params']:,}  MACs {a.get('macs', 0):,}")
    parts += [f"{k}: {v}" for k, v in (r["choices"] or {}).items()]
    return "<br>".join(parts)


def pareto_html(path: Path, data: Any, title: str = "") -> None:
    """Interactive scatter: hovering a point shows its trial, figures and layer choices."""
    import plotly.graph_objects as go

    x, y = _axes(data)
    complete = [r for r in data.rows if r["state"] == "COMPLETE" and r["values"]]
    front_ids = {r["number"] for r in data.front}
    base_ids = {r["number"] for r in data.baselines}
    groups = [("dominated", [r for r in complete if r["number"] not in front_ids | base_ids],
               dict(color="#aaaaaa", size=6)),
              ("front", data.front, dict(color="#d62728", size=9)),
              ("baselines", data.baselines, dict(color="black", size=10, symbol="x"))]
    fig = go.Figure()
    for name, rows, marker in groups:
        px, py = _xy(rows, x, y)
        fig.add_trace(go.Scatter(x=px, y=py, mode="markers+text" if name == "baselines" else "markers",
                                 name=f"{name} ({len(px)})", marker=marker,
                                 text=[r["baseline"] for r in rows] if name == "baselines" else None,
                                 textposition="top right",
                                 hovertext=[_hover(r) for r in rows], hoverinfo="text"))
    fig.update_layout(title=title, xaxis_title=LABELS.get(x, x), yaxis_title=LABELS.get(y, y),
                      template="plotly_white")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def hypervolume_png(path: Path, data: Any) -> None:
    from .rundata import hv_history

    numbers, hv = hv_history(data)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if numbers:
        # x: trial number, so pruned and failed trials (which leave the front as it is) take their place
        last = max(r["number"] for r in data.rows)
        ax.step(numbers + [last], hv + [hv[-1]], where="post", c="tab:blue", label="front hypervolume")
        ax.scatter(numbers, hv, s=10, c="tab:blue", zorder=3)
        base = [r["number"] for r in data.rows if r["baseline"]]
        if base and max(base) < last:
            ax.axvline(max(base) + 0.5, c="0.5", ls="--", lw=0.8, label=f"baselines done ({len(set(base))})")
        ax.legend(fontsize=8, loc="lower right")
    ref = ", ".join(f"{o} {v:.3g}" for o, v in zip(data.objectives, data.natural(data.ref or [])))
    ax.set_xlabel("trial number (dots: completed trials)")
    ax.set_ylabel("hypervolume")
    ax.set_title(f"hypervolume of the front (reference: {ref})" if numbers else "no completed trial", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def layers_png(path: Path, data: Any) -> None:
    """Per-layer choices of the front's members (rows: members by latency; columns: layers)."""
    rows = [r for r in data.front if r["choices"]]
    layers: list[str] = []
    for r in rows:
        for k in r["choices"]:
            if k not in layers:
                layers.append(k)
    fig_h = 1.2 + 0.32 * max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(layers) + 2), fig_h), dpi=110)
    if not rows:
        ax.text(0.5, 0.5, "no front members with layer choices", ha="center", va="center")
        ax.axis("off")
    else:
        codes = np.zeros((len(rows), len(layers)))
        for j, layer in enumerate(layers):
            labels = sorted({str(r["choices"].get(layer, "")) for r in rows})
            for i, r in enumerate(rows):
                codes[i, j] = labels.index(str(r["choices"].get(layer, ""))) / max(1, len(labels) - 1)
        ax.imshow(codes, cmap="Pastel1", aspect="auto", vmin=0, vmax=1)
        for i, r in enumerate(rows):
            for j, layer in enumerate(layers):
                ax.text(j, i, str(r["choices"].get(layer, "")), ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(layers)), layers, fontsize=7, rotation=30)
        ax.set_xlabel("searched layer (input to output)", fontsize=8)
        ylabels = []
        for r in rows:
            lat = r["attrs"].get("latency_ms")
            acc = r["values"].get("accuracy", r["attrs"].get("accuracy"))
            label = f"#{r['number']}"
            if acc is not None:
                label += f" {acc:.3f}"
            if lat is not None:
                label += f" {lat:.2f}ms"
            ylabels.append(label + (f" [{r['baseline']}]" if r["baseline"] else ""))
        ax.set_yticks(range(len(rows)), ylabels, fontsize=7)
        ax.set_title("layer choices of the front members (rows: #trial accuracy latency, fastest first)",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

