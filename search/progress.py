"""One progress line from a study's trials: done/total, pruned, failed, front, hypervolume, ETA.

``[ 12/40] pruned 3 failed 0 | front 4, HV 0.812 | best acc: 0.41ms 0.912, 0.63ms 0.951 | ETA 4m10s``

"best acc" lists the front's members by their cost (at most five, spread over the front): the
best accuracy reached at each cost, in the cost's own unit (``0.41ms`` for latency, ``12.3k
params``, ``1.20M MACs``). The hypervolume's reference point follows the one rule of
``search.objectives.reference`` (as the report does), over the trials seen so far, so the
figure can grow as slower trials arrive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .objectives import format_value, reference, to_min
from .pareto import hypervolume, pareto_mask

__all__ = ["Progress", "summarise", "format_eta", "format_cost"]

def format_cost(objective: str, value: float) -> str:
    """A cost with its unit: ``0.413ms``, ``12.3k params``, ``1.2M MACs``."""
    return format_value(objective, value)


@dataclass
class Progress:
    done: int
    total: int
    complete: int
    pruned: int
    failed: int
    running: int
    front: list[tuple[float, ...]]
    hv: float | None
    eta_s: float | None
    objectives: tuple[str, ...] = ("accuracy", "latency")

    def line(self) -> str:
        width = len(str(self.total))
        s = (f"[{self.done:>{width}}/{self.total}] pruned {self.pruned} failed {self.failed}"
             + (f" running {self.running}" if self.running else ""))
        s += f" | front {len(self.front)}"
        if self.hv is not None:
            s += f", HV {self.hv:.4g}"
        if self.front and len(self.front[0]) == 2 and "accuracy" in self.objectives:
            a = list(self.objectives).index("accuracy")
            c = 1 - a
            cost = self.objectives[c]
            pts = sorted(self.front, key=lambda p: p[c])
            pick = sorted({int(round(i)) for i in np.linspace(0, len(pts) - 1, min(5, len(pts)))})
            s += " | best acc: " + ", ".join(f"{format_cost(cost, pts[i][c])} {pts[i][a]:.3f}" for i in pick)
        if self.eta_s is not None:
            s += f" | ETA {format_eta(self.eta_s)}"
        return s


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def summarise(trials: Sequence[Any], objectives: Sequence[str], total: int, workers: int = 1,
              deadline: float | None = None, counted: Sequence[Any] | None = None,
              proxy: str = "train") -> Progress:
    """Progress of ``trials`` (Optuna FrozenTrials) towards ``total`` finished trials."""
    states = [t.state.name for t in trials]
    finished = [t for t in (counted if counted is not None else trials) if t.state.is_finished()]
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values is not None]
    front: list[tuple[float, ...]] = []
    hv = None
    if complete:
        vals = np.array([t.values for t in complete], dtype=float)
        pts = to_min(vals, objectives)
        mask = pareto_mask(pts)
        front = [tuple(v) for v in vals[mask]]
        if len(objectives) in (2, 3):
            hv = hypervolume(pts[mask], reference(pts, objectives, proxy))
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished
                 if t.datetime_complete and t.datetime_start]
    eta = None
    remaining = max(0, total - len(finished))
    if durations:
        eta = float(np.mean(durations[-20:])) * remaining / max(1, workers)
    if deadline is not None:
        left = max(0.0, deadline - time.time())
        eta = left if eta is None else min(eta, left)
    return Progress(done=len(finished), total=total, complete=len(complete),
                    pruned=states.count("PRUNED"), failed=states.count("FAIL"),
                    running=states.count("RUNNING"), front=front, hv=hv, eta_s=eta, objectives=tuple(objectives))
