"""bench/proxy_correlation.reference_noise: the reference's reproducibility and the bound it sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from bench.proxy_correlation import reference_noise


def test_identical_seeds_are_perfectly_reliable_and_a_shift_is_not_noise():
    a = [0.90, 0.91, 0.905, 0.899, 0.912]
    out = reference_noise([a, [x + 0.003 for x in a]])  # every arch 0.3 points better: same ranking
    assert out["seed_spearman"] == pytest.approx(1.0)
    assert out["seed_sd"] == pytest.approx(0.0, abs=1e-12)
    assert out["ceiling_one_seed"] == pytest.approx(1.0) and out["ceiling_mean"] == pytest.approx(1.0)


def test_two_seeds_follow_the_attenuation_bound_and_spearman_brown():
    s0 = [1, 2, 3, 4, 5, 6]
    s1 = [2, 1, 4, 3, 6, 5]  # neighbours swapped
    r = 1 - 6 * 6 / (6 * (36 - 1))  # Spearman from rank differences: sum d^2 = 6
    out = reference_noise([s0, s1])
    assert out["seed_spearman"] == pytest.approx(r)
    assert out["ceiling_one_seed"] == pytest.approx(math.sqrt(r))
    assert out["ceiling_mean"] == pytest.approx(math.sqrt(2 * r / (1 + r)))
    d = np.subtract(s1, s0)  # +1/-1 alternating: SD of the difference, per training / sqrt(2)
    assert out["seed_sd"] == pytest.approx(np.std(d, ddof=1) / math.sqrt(2))


def test_three_seeds_average_the_pairs():
    rng = np.random.default_rng(0)
    true = rng.normal(size=20)
    refs = [true + rng.normal(scale=0.5, size=20) for _ in range(3)]
    pairs = [spearmanr(refs[i], refs[j]).statistic for i, j in ((0, 1), (0, 2), (1, 2))]
    out = reference_noise([list(r) for r in refs])
    assert out["seeds"] == 3
    assert out["seed_spearman"] == pytest.approx(np.mean(pairs))
    assert 0 < out["ceiling_one_seed"] < out["ceiling_mean"] < 1


def test_anticorrelated_seeds_give_a_zero_ceiling():
    out = reference_noise([[1, 2, 3, 4], [4, 3, 2, 1]])
    assert out["seed_spearman"] == pytest.approx(-1.0)
    assert out["ceiling_one_seed"] == 0.0 and out["ceiling_mean"] == 0.0
