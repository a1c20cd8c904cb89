"""Hypervolume gain of candidate points over a front, for Monte Carlo expected hypervolume
improvement (Emmerich, Giannakoglou & Naujoks 2006): the screened sampler's acquisition.

All in minimisation form; ``neg_acc`` is (samples, candidates) of negated predicted accuracy.
"""

from __future__ import annotations

import numpy as np

from .pareto import hypervolume

__all__ = ["gain_2d", "gain_any"]


def gain_2d(front: np.ndarray, ref: np.ndarray, neg_acc: np.ndarray, cost: np.ndarray, acc_i: int) -> np.ndarray:
    """Exact 2-D hypervolume gain of each (sample, candidate) point over ``front`` (minimisation).

    With a = the accuracy axis and c = the cost axis, the front's attainment is a staircase
    h(u) = min cost of members with a-value <= u; the gain of (x, y) is the integral over
    u in [x, ref_a] of max(0, min(ref_c, h(u)) - y).
    """
    fa, fc = front[:, acc_i], front[:, 1 - acc_i]
    order = np.argsort(fa)
    fa, fc = fa[order], np.minimum.accumulate(fc[order])
    edges = np.concatenate([fa, [ref[acc_i]]])
    edges = np.minimum(edges, ref[acc_i])
    level = np.minimum(fc, ref[1 - acc_i])  # staircase height on [edges[k], edges[k+1])
    lo = np.concatenate([[-np.inf], edges[:-1]])  # before the first member: height ref_c
    hi = edges
    height = np.concatenate([[ref[1 - acc_i]], level])
    x = neg_acc[..., None]  # (T, M, 1)
    y = cost[None, :, None]
    width = np.clip(hi - np.maximum(lo, x), 0.0, None)
    return (width * np.clip(height - y, 0.0, None)).sum(-1)


def gain_any(front: np.ndarray, ref: np.ndarray, neg_acc: np.ndarray, cost: np.ndarray, acc_i: int) -> np.ndarray:
    """Hypervolume gain point by point (three objectives)."""
    base = hypervolume(front, ref)
    gains = np.zeros(neg_acc.shape)
    for c in range(neg_acc.shape[1]):
        point = np.insert(cost[c], acc_i, 0.0)
        if np.any(np.delete(point, acc_i) >= np.delete(ref, acc_i)):
            continue
        for t in range(neg_acc.shape[0]):
            point[acc_i] = neg_acc[t, c]
            if not np.any(np.all(front <= point, axis=1)):
                gains[t, c] = hypervolume(np.vstack([front, point]), ref) - base
    return gains
