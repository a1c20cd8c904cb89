"""search.plots.pareto_png: every pruned trial's cost tick lies inside the x range, also when a
pruned trial is slower than every completed one (the ticks used to be drawn past the axes)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_pruned_ticks_lie_inside_the_cost_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    from search.plots import pareto_png
    from search.rundata import RunData

    def done(n: int, acc: float, lat: float) -> dict:
        return {"number": n, "state": "COMPLETE", "values": {"accuracy": acc, "latency": lat},
                "attrs": {"latency_ms": lat}, "baseline": None}

    rows = [done(0, 0.80, 4.0), done(1, 0.85, 5.0), done(2, 0.83, 6.0)]
    slow = [9.2, 10.6, 13.0]                                   # pruned, slower than any completed trial
    rows += [{"number": 3 + i, "state": "PRUNED", "values": {}, "attrs": {"latency_ms": v}, "baseline": None}
             for i, v in enumerate(slow)]
    data = RunData(["accuracy", "latency"], rows, front=rows[:2])
    limits: list[tuple[float, float]] = []
    real = matplotlib.figure.Figure.savefig

    def keep(fig, *a, **k):  # type: ignore[no-untyped-def]
        limits.append(fig.axes[0].get_xlim())
        return real(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    pareto_png(tmp_path / "p.png", data, "t")
    lo, hi = limits[0]
    assert lo < 4.0 and hi > max(slow)
    assert (tmp_path / "p.png").stat().st_size > 0
