"""The one objective registry: name, direction, figure key, unit format, hypervolume reference.

Every module that needs to know whether an objective goes up or down, which key of a trial's
figures holds it, how to print it or where the hypervolume's reference point lies reads it
here (``OBJECTIVES``), so the progress line, the report, the pruner, the targets and the Ray
searcher cannot drift apart.

Reference point of the hypervolume (Zitzler & Thiele 1998; stated with every HV figure): per
objective, in minimisation form, the worst value seen plus 10 % of the range
(``search.pareto.reference_point``), except where ``Objective.ref`` fixes it: the accuracy of
the short training lies in [0, 1], so its reference is accuracy 0; a zero-cost score
(``--proxy synflow`` ...) is unbounded and takes the margin rule like the costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["Objective", "OBJECTIVES", "directions", "keys", "values", "to_min", "reference", "format_value",
           "REF_MARGIN", "FIGURES"]

REF_MARGIN = 0.1
#: every figure a trial may record (its user attributes), in the order of trials.csv
FIGURES = ("accuracy", "latency_ms", "latency_iqr_ms", "latency_runs", "latency_batch", "threads",
           "memory_format", "node", "params", "macs", "seconds", "eval_seconds", "acc_epochs", "learned", "proxy")


def _si(value: float, unit: str) -> str:
    for suffix, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix} {unit}"
    return f"{value:.0f} {unit}"


@dataclass(frozen=True)
class Objective:
    """One objective: ``direction`` is Optuna's word, ``key`` the figure that holds it."""

    name: str
    direction: str                           # "maximize" | "minimize"
    key: str                                 # key in a trial's figures / user attributes
    fmt: Callable[[float], str]              # value with its unit, for the progress line
    ref: Callable[[str], float | None]       # proxy -> fixed reference value (natural units) or None

    @property
    def mode(self) -> str:
        """Ray Tune's word for the direction."""
        return "max" if self.direction == "maximize" else "min"

    @property
    def sign(self) -> float:
        """Multiply by this to get minimisation form."""
        return -1.0 if self.direction == "maximize" else 1.0


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("accuracy", "maximize", "accuracy", lambda v: f"{v:.3f}",
              lambda proxy: 0.0 if proxy == "train" else None),
    Objective("latency", "minimize", "latency_ms", lambda v: f"{v:.3g}ms", lambda proxy: None),
    Objective("params", "minimize", "params", lambda v: _si(v, "params"), lambda proxy: None),
    Objective("macs", "minimize", "macs", lambda v: _si(v, "MACs"), lambda proxy: None),
)}


def directions(objectives: Sequence[str]) -> list[str]:
    return [OBJECTIVES[o].direction for o in objectives]


def keys(objectives: Sequence[str]) -> list[str]:
    return [OBJECTIVES[o].key for o in objectives]


def values(figures: Mapping[str, Any], objectives: Sequence[str]) -> list[float]:
    """The objective vector (Optuna's order and directions) from a figures dict."""
    return [float(figures[OBJECTIVES[o].key]) for o in objectives]


def to_min(rows: Sequence[Sequence[float]] | np.ndarray, objectives: Sequence[str]) -> np.ndarray:
    """Objective vectors in natural units -> minimisation form (maximised ones negated)."""
    signs = np.array([OBJECTIVES[o].sign for o in objectives], dtype=float)
    arr = np.asarray(rows, dtype=float)
    return arr.reshape(-1, len(objectives)) * signs


def reference(points_min: np.ndarray, objectives: Sequence[str], proxy: str = "train") -> np.ndarray:
    """The hypervolume reference point (minimisation form) of ``points_min`` (see the module doc)."""
    from .pareto import reference_point

    fixed = {}
    for j, o in enumerate(objectives):
        v = OBJECTIVES[o].ref(proxy)
        if v is not None:
            fixed[j] = OBJECTIVES[o].sign * v
    return reference_point(points_min, REF_MARGIN, fixed)


def format_value(objective: str, value: float) -> str:
    """A value with its unit: ``0.413ms``, ``12.3k params``, ``1.2M MACs``."""
    obj = OBJECTIVES.get(objective)
    return obj.fmt(value) if obj is not None else f"{value:.4g}"
