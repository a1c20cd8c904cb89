"""bench/search_quality credits the search only with baselines a searched trial dominates."""

from __future__ import annotations

import json
import random

from bench.search_quality import coverage, searched_points
from search.pareto import dominates


def _run(base: dict[str, tuple[float, float]], searched: list[tuple[float, float]]) -> dict:
    points = [list(v) for v in base.values()] + [list(p) for p in searched]
    return json.loads(json.dumps({"base": {k: list(v) for k, v in base.items()}, "points": points}))


def test_a_baseline_dominating_another_is_not_the_searchs_credit():
    base = {"dense": (0.87, 9.0), "dense-k5": (0.865, 25.0),  # dense dominates dense-k5
            "group-g2": (0.85, 5.0), "dwsep": (0.83, 1.5)}
    run = _run(base, [(0.855, 4.9), (0.80, 1.6)])  # dominates group-g2 only
    dom, hit, families = coverage(run)
    assert dom == ["group-g2"]
    assert (hit, families) == (1, 3)
    assert sorted(map(tuple, searched_points(run).tolist())) == [(-0.855, 4.9), (-0.80, 1.6)]


def test_an_equal_point_dominates_nothing_and_a_tie_on_one_objective_does():
    base = {"igc-L2": (0.85, 5.0), "igc-L4": (0.84, 5.0)}
    assert coverage(_run(base, [(0.85, 5.0000001)]))[0] == []
    assert coverage(_run(base, [(0.845, 5.0)]))[0] == ["igc-L4"]


def test_coverage_matches_pairwise_dominance_on_random_runs():
    rng = random.Random(3)
    for _ in range(50):
        names = [f"{f}-{i}" for f in ("a", "b", "c") for i in range(rng.randint(1, 3))]
        base = {n: (round(rng.uniform(0.8, 0.9), 3), round(rng.uniform(1, 10), 1)) for n in names}
        searched = [(round(rng.uniform(0.8, 0.9), 3), round(rng.uniform(1, 10), 1)) for _ in range(rng.randint(0, 6))]
        searched = [p for p in searched if p not in base.values()]
        want = sorted(n for n, (a, c) in base.items() if any(dominates((-sa, sc), (-a, c)) for sa, sc in searched))
        dom, hit, families = coverage(_run(base, searched))
        assert dom == want
        assert hit == len({n.split("-")[0] for n in want}) and families == 3
