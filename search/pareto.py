"""Pareto fronts in small pure NumPy functions: dominance, non-dominated sorting, hypervolume, knee.

Every function takes points as an ``(n, k)`` array in **minimisation** form; turn objectives
into it in one place with ``to_minimisation(values, directions)`` (a maximised objective is
negated), as Optuna's ``_multi_objective`` module does.

- Dominance (Deb et al. 2002, NSGA-II): ``a`` dominates ``b`` when ``a <= b`` in every
  objective and ``a < b`` in at least one.
- Non-dominated sorting: rank 0 is the front, rank 1 the front once rank 0 is removed, ...
- Hypervolume (Zitzler & Thiele 1998): the Lebesgue measure of the region dominated by the
  points and bounded by the reference point ``ref`` (every point worse than ``ref`` in some
  objective contributes nothing). Exact for 2 objectives (sweep, O(n log n)) and 3 objectives
  (slices along the third objective, each a 2-D sweep, O(n^2 log n)).
- Knee: after scaling each objective of the front to [0, 1] (0 = best), the member nearest
  to the ideal point (0, ..., 0) in Euclidean distance: the most balanced trade-off.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["to_minimisation", "dominates", "pareto_mask", "non_dominated_sort", "hypervolume",
           "knee_index", "reference_point", "hypervolume_history"]


def _points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    p = np.asarray(points, dtype=float)
    if p.ndim == 1 and p.size == 0:
        return p.reshape(0, 0)
    if p.ndim != 2:
        raise ValueError(f"points must be an (n, k) array, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("points must be finite (no NaN or inf)")
    return p


def to_minimisation(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """``values`` (n, k) with ``directions[j]`` in {"maximize", "minimize"} -> minimisation form."""
    v = np.asarray(values, dtype=float).reshape(-1, len(directions))
    sign = np.ones(len(directions))
    for j, d in enumerate(directions):
        if d not in ("maximize", "minimize"):
            raise ValueError(f"direction {j} must be 'maximize' or 'minimize', got {d!r}")
        if d == "maximize":
            sign[j] = -1.0
    return v * sign


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b`` (minimisation)."""
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(a_ <= b_) and np.any(a_ < b_))


def pareto_mask(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean mask of the non-dominated points (equal points are all kept)."""
    p = _points(points)
    n = len(p)
    if n == 0:
        return np.zeros(0, dtype=bool)
    # Sort lexicographically: a point can only be dominated by one earlier in this order.
    order = np.lexsort(p.T[::-1])
    keep = np.zeros(n, dtype=bool)
    front: list[np.ndarray] = []
    for i in order:
        q = p[i]
        if front:
            f = np.asarray(front)
            if np.any(np.all(f <= q, axis=1) & np.any(f < q, axis=1)):
                continue
        keep[i] = True
        front.append(q)
    return keep


def non_dominated_sort(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Rank of every point: 0 for the front, 1 for the next front, ..."""
    p = _points(points)
    ranks = np.full(len(p), -1, dtype=int)
    remaining = np.arange(len(p))
    rank = 0
    while remaining.size:
        mask = pareto_mask(p[remaining])
        ranks[remaining[mask]] = rank
        remaining = remaining[~mask]
        rank += 1
    return ranks


def _hv2_sweep(p: np.ndarray, ref: np.ndarray) -> float:
    """2-D hypervolume: sort by the first objective, add one rectangle per improving point."""
    p = p[np.all(p < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    p = p[np.lexsort((p[:, 1], p[:, 0]))]
    volume, best_y = 0.0, float(ref[1])
    for x, y in p:
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(volume)


def _hv3(p: np.ndarray, ref: np.ndarray) -> float:
    """3-D hypervolume: slabs between consecutive third-objective values, each a 2-D area."""
    p = p[np.all(p < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    p = p[np.argsort(p[:, 2], kind="stable")]
    zs = np.append(p[:, 2], ref[2])
    volume = 0.0
    for i in range(len(p)):
        depth = zs[i + 1] - zs[i]
        if depth > 0:
            volume += _hv2_sweep(p[: i + 1, :2], ref[:2]) * depth
    return float(volume)


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], ref: np.ndarray | Sequence[float]) -> float:
    """Hypervolume of ``points`` (minimisation) bounded by ``ref``; 2 or 3 objectives."""
    p = _points(points)
    r = np.asarray(ref, dtype=float)
    if p.size == 0:
        return 0.0
    if r.shape != (p.shape[1],):
        raise ValueError(f"reference point must have {p.shape[1]} values, got {r.tolist()}")
    if p.shape[1] == 2:
        return _hv2_sweep(p, r)
    if p.shape[1] == 3:
        return _hv3(p, r)
    raise ValueError(f"hypervolume supports 2 or 3 objectives, got {p.shape[1]}")


def reference_point(points: np.ndarray | Sequence[Sequence[float]], margin: float = 0.1,
                    fixed: dict[int, float] | None = None) -> np.ndarray:
    """A reference point: per objective ``max + margin * (max - min)`` (or ``fixed[j]``).

    State it with the hypervolume: a hypervolume means nothing without its reference point.
    """
    p = _points(points)
    worst, best = p.max(axis=0), p.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    ref = worst + margin * span
    for j, v in (fixed or {}).items():
        ref[j] = v
    return ref


def hypervolume_history(points: np.ndarray | Sequence[Sequence[float]],
                        ref: np.ndarray | Sequence[float]) -> np.ndarray:
    """Hypervolume of the first ``i + 1`` points, for every ``i`` (front kept incrementally)."""
    p = _points(points)
    out = np.zeros(len(p))
    front = np.zeros((0, p.shape[1] if p.size else 0))
    current = 0.0
    for i, q in enumerate(p):
        if len(front) and np.any(np.all(front <= q, axis=1)):
            out[i] = current  # dominated by (or equal to) the front: nothing changes
            continue
        keep = ~(np.all(q <= front, axis=1) & np.any(q < front, axis=1)) if len(front) else np.zeros(0, bool)
        front = np.vstack([front[keep], q]) if len(front) else q.reshape(1, -1)
        current = hypervolume(front, ref)
        out[i] = current
    return out


def knee_index(points: np.ndarray | Sequence[Sequence[float]]) -> int:
    """Index (into ``points``) of the knee of their front: see the module docstring."""
    p = _points(points)
    if len(p) == 0:
        raise ValueError("knee of an empty set of points")
    idx = np.flatnonzero(pareto_mask(p))
    f = p[idx]
    lo, hi = f.min(axis=0), f.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    dist = np.sqrt((((f - lo) / span) ** 2).sum(axis=1))
    return int(idx[int(np.argmin(dist))])
