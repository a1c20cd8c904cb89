"""bench/front_transfer.py's claim list, rank agreement and the reference's self-agreement, against
brute force on made-up trials."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from front_transfer import claims, rank_agreement, run_claims, self_agreement  # noqa: E402


def _trials(rng: np.random.Generator, n: int, baselines: int) -> list:
    out = []
    for i in range(n):
        state = TrialState.PRUNED if rng.random() < 0.2 else TrialState.COMPLETE
        values = [float(rng.choice([0.80, 0.82, 0.84, 0.86])), float(rng.choice([4.0, 5.0, 6.0]))]
        attrs = {"baseline": f"b{i}"} if i < baselines else {}
        t = create_trial(state=state, values=values if state == TrialState.COMPLETE else None,
                         params={"x": float(i)}, distributions={"x": FloatDistribution(0, 100)},
                         user_attrs=attrs, intermediate_values={0: values[0]})
        t.number = i
        out.append(t)
    return out


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """accuracy up, latency down, at least as good in both and not equal."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def test_claims_are_every_front_member_over_every_baseline_it_dominates() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        trials = _trials(rng, 14, baselines=5)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        front = [t for t in done if not any(_dominates(tuple(o.values), tuple(t.values)) for o in done)]
        base = {t.user_attrs["baseline"]: t for t in done if "baseline" in t.user_attrs}
        expect = {(m.number, name) for m, (name, b) in itertools.product(front, base.items())
                  if m.number != b.number and _dominates(tuple(m.values), tuple(b.values))}
        got_front, got_base, pairs = claims(trials)
        assert sorted(t.number for t in got_front) == sorted(t.number for t in front)
        assert set(got_base) == set(base)
        assert set(pairs) == expect and len(pairs) == len(expect)


def test_self_agreement_counts_claims_both_references_decide_alike() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        nets = list(range(8))
        first = {n: float(v) for n, v in zip(nets, rng.choice([0.80, 0.81, 0.82], 8))}   # ties on purpose
        second = {n: first[n] + float(rng.normal(0, 0.01)) for n in nets}
        pairs = [(int(a), int(b)) for a, b in rng.choice(8, size=(10, 2)) if a != b]
        sign1 = np.sign([first[m] - first[b] for m, b in pairs])
        sign2 = np.sign([second[m] - second[b] for m, b in pairs])
        want_one, want_two = int(np.sum(sign1 >= 0)), int(np.sum(sign2 >= 0))
        want_agree = int(np.sum((sign1 >= 0) == (sign2 >= 0)))
        assert self_agreement(pairs, first, second) == (want_agree, want_one, want_two)
    assert self_agreement([(0, 1)], {0: 0.8, 1: 0.8}, {0: 0.79, 1: 0.8}) == (0, 1, 0)   # a tie holds


def test_rank_agreement_is_pearson_on_ranks_and_nan_when_undefined() -> None:
    rng = np.random.default_rng(0)
    short = {i: float(v) for i, v in enumerate(rng.random(9))}
    long = {i: float(v) for i, v in enumerate(rng.random(9))}
    ranks = [np.argsort(np.argsort([d[k] for k in sorted(d)])) for d in (short, long)]
    assert np.isclose(rank_agreement(short, long), np.corrcoef(*ranks)[0, 1])
    assert np.isclose(rank_agreement(short, short), 1.0)
    assert np.isclose(rank_agreement(short, {k: -v for k, v in short.items()}), -1.0)
    assert np.isnan(rank_agreement({0: 0.1, 1: 0.2}, {0: 0.3, 1: 0.4}))
    assert np.isnan(rank_agreement(short, dict.fromkeys(short, 0.5)))


def test_run_claims_are_the_runs_own_after_retiming_and_without_repeats(tmp_path) -> None:
    """The claims checked are pareto.json's: a member re-timed slower at the end of the run no
    longer dominates the baseline it beat only on its own timing, and a repeat claims nothing."""
    import json

    study = optuna.create_study(directions=["maximize", "minimize"])
    rows = [((0.80, 5.0), {"baseline": "b0"}), ((0.84, 6.0), {"baseline": "b1"}),
            ((0.85, 4.9), {}), ((0.85, 4.9), {"repeat_of": 2})]
    for i, (values, attrs) in enumerate(rows):
        study.add_trial(create_trial(values=list(values), params={"x": float(i)},
                                     distributions={"x": FloatDistribution(0, 100)}, user_attrs=attrs))
    config = {"objectives": ["accuracy", "latency"]}
    plain = claims(study.get_trials(deepcopy=False))[2]
    assert set(plain) == {(2, "b0"), (2, "b1"), (3, "b0"), (3, "b1")}
    front, base, pairs = run_claims(tmp_path, study, config)  # no re-timing: the trial values
    assert set(pairs) == {(2, "b0"), (2, "b1")} and set(base) == {"b0", "b1"}
    assert [r["number"] for r in front] == [2]
    (tmp_path / "final_latency.json").write_text(json.dumps({"members": {"2": {"latency_ms": 5.5}}}))
    _, base, pairs = run_claims(tmp_path, study, config)
    assert pairs == [(2, "b1")] and base["b1"]["number"] == 1


optuna.logging.set_verbosity(optuna.logging.WARNING)
