"""search.pareto against brute force on random point sets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from search.pareto import (
    dominates,
    hypervolume,
    hypervolume_history,
    knee_index,
    non_dominated_sort,
    pareto_mask,
    reference_point,
    to_minimisation,
)


def brute_front(p: np.ndarray) -> np.ndarray:
    n = len(p)
    return np.array([not any(np.all(p[j] <= p[i]) and np.any(p[j] < p[i]) for j in range(n) if j != i)
                     for i in range(n)], dtype=bool)


def brute_ranks(p: np.ndarray) -> np.ndarray:
    """Rank = length of the longest chain of points dominating it (an independent definition)."""
    n = len(p)
    ranks = np.zeros(n, dtype=int)
    order = np.argsort(p.sum(axis=1))  # a dominator always has a smaller sum
    for i in order:
        doms = [ranks[j] + 1 for j in range(n) if np.all(p[j] <= p[i]) and np.any(p[j] < p[i])]
        ranks[i] = max(doms, default=0)
    return ranks


def grid_hypervolume(p: np.ndarray, ref: np.ndarray) -> float:
    """Exact union volume on the grid of all coordinates: a cell counts if its low corner is dominated."""
    p = p[np.all(p < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    axes = [np.unique(np.append(p[:, j], ref[j])) for j in range(p.shape[1])]
    vol = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        low = np.array([axes[j][c] for j, c in enumerate(cell)])
        if np.any(np.all(p <= low, axis=1)):
            vol += float(np.prod([axes[j][c + 1] - axes[j][c] for j, c in enumerate(cell)]))
    return vol


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("k", [2, 3])
def test_front_and_ranks_match_brute_force(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    # integer coordinates produce ties and duplicates, the hard cases
    p = rng.integers(0, 6, size=(n, k)).astype(float) if seed % 2 else rng.random((n, k))
    assert np.array_equal(pareto_mask(p), brute_front(p))
    assert np.array_equal(non_dominated_sort(p), brute_ranks(p))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_matches_grid_count(seed: int, k: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 14))
    p = rng.integers(0, 8, size=(n, k)).astype(float) if seed % 2 else rng.random((n, k))
    ref = np.full(k, 1.0 if seed % 2 == 0 else 7.0)  # some points lie beyond the reference
    assert hypervolume(p, ref) == pytest.approx(grid_hypervolume(p, ref), rel=1e-12, abs=1e-12)


def test_hypervolume_known_values() -> None:
    assert hypervolume([[1.0, 1.0]], [3.0, 2.0]) == pytest.approx(2.0)
    assert hypervolume([[0, 2], [1, 1], [2, 0]], [3, 3]) == pytest.approx(6.0)
    assert hypervolume([[0, 0, 0]], [2, 3, 4]) == pytest.approx(24.0)
    assert hypervolume([[5, 5]], [3, 3]) == 0.0
    with pytest.raises(ValueError, match="2 or 3 objectives"):
        hypervolume([[0, 0, 0, 0]], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="reference point"):
        hypervolume([[0, 0]], [1, 1, 1])


def test_hypervolume_history_is_prefix_hypervolume() -> None:
    rng = np.random.default_rng(7)
    p = rng.random((30, 2))
    ref = np.array([1.1, 1.1])
    hist = hypervolume_history(p, ref)
    assert np.allclose(hist, [hypervolume(p[: i + 1], ref) for i in range(len(p))])
    assert np.all(np.diff(hist) >= -1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_knee_is_front_member_nearest_ideal(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    p = rng.random((25, 2))
    i = knee_index(p)
    front = brute_front(p)
    assert front[i]
    f = p[front]
    scaled = (f - f.min(0)) / (f.max(0) - f.min(0))
    best = np.min(np.linalg.norm(scaled, axis=1))
    mine = np.linalg.norm((p[i] - f.min(0)) / (f.max(0) - f.min(0)))
    assert mine == pytest.approx(best)


def test_knee_of_convex_front_is_the_corner() -> None:
    # an L-shaped front: the corner (0.1, 0.1) is the obvious knee
    p = [[0.0, 1.0], [0.1, 0.1], [1.0, 0.0], [0.5, 0.5]]
    assert knee_index(p) == 1


def test_directions_and_dominance() -> None:
    v = to_minimisation([[0.9, 2.0], [0.8, 1.0]], ["maximize", "minimize"])
    assert v.tolist() == [[-0.9, 2.0], [-0.8, 1.0]]
    assert dominates([0, 0], [0, 1]) and not dominates([0, 1], [0, 1]) and not dominates([0, 2], [1, 0])
    with pytest.raises(ValueError, match="direction"):
        to_minimisation([[1.0]], ["up"])
    ref = reference_point([[0, 1], [2, 3]], margin=0.5, fixed={0: 10.0})
    assert ref.tolist() == [10.0, 4.0]
