"""search.sampling: the samplers, their random streams, and the priced screening sampler."""

from __future__ import annotations

import math
import statistics
import zlib

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

import spaces
from evaluators.cost import count_macs, count_params
from search.hv_gain import gain_2d
from search.pareto import hypervolume, pareto_mask
from search.sampling import SAMPLERS, make_sampler, population_for, startup_for
from search.sampling_screen import ScreenedSampler, _accuracy_targets, _key

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def space():
    return spaces.get_space("igc", backbone="small", input_shape=(1, 16, 16), num_classes=10)


def _figures(space, params):
    """A cheap stand-in objective: accuracy rises with log params, plus a fixed per-arch term."""
    arch = space.arch_from_params(params)
    model = spaces.build_model(arch, seed=0)
    p, macs = count_params(model), count_macs(model, tuple(arch.input_shape))
    bump = (zlib.crc32(repr(sorted(params.items())).encode()) % 1000) / 1000 * 0.03
    return 0.3 + 0.05 * math.log(p) + bump, float(macs)  # the product's unit: multiply-adds


def _run(space, sampler, n, study=None):
    study = study or optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.set_user_attr("objectives", ["accuracy", "macs"])
    for _ in range(n):
        trial = study.ask()
        space.sample(trial)
        study.tell(trial, list(_figures(space, trial.params)))
    return study


def _keys(study):
    return [tuple(sorted(t.params.items())) for t in study.trials]


def test_every_name_and_the_errors(space):
    for name in SAMPLERS:
        assert isinstance(make_sampler(name, seed=0, n_trials=36, space=space), optuna.samplers.BaseSampler)
    assert make_sampler("nsga2", seed=0, n_trials=36)._population_size == population_for(36) == 7
    assert population_for(1000) == 50 and population_for(3) == 4 and startup_for(36) == 6
    with pytest.raises(ValueError, match="known samplers"):
        make_sampler("annealing", seed=0, n_trials=10)
    with pytest.raises(ValueError, match="needs the space"):
        make_sampler("screened", seed=0, n_trials=10)
    with pytest.raises(ValueError, match="n_trials"):
        make_sampler("random", seed=0, n_trials=0)


def test_same_seed_shares_at_most_the_startup_trials_with_random(space):
    n = 8
    rnd = set(_keys(_run(space, make_sampler("random", seed=0, n_trials=n), n)))
    # before the fix, NSGA-II's first generation replayed RandomSampler(seed) trial for trial
    for name in ("nsga2", "tpe"):
        other = _keys(_run(space, make_sampler(name, seed=0, n_trials=n, space=space), n))
        assert len(rnd & set(other)) == 0, name
    screened = _keys(_run(space, make_sampler("screened", seed=0, n_trials=n, space=space), n))
    assert len(rnd & set(screened)) <= startup_for(n)
    assert len(set(screened)) == n  # never proposes an architecture twice


def test_workers_and_processes_draw_their_own_streams(space):
    a = _keys(_run(space, make_sampler("random", seed=3, n_trials=8, worker_id=0), 4))
    b = _keys(_run(space, make_sampler("random", seed=3, n_trials=8, worker_id=1), 4))
    assert not set(a) & set(b)
    # two processes on one shared study with the same seed and worker id: trial numbers differ
    storage = optuna.storages.InMemoryStorage()
    studies = [optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"],
                                   load_if_exists=True, sampler=make_sampler("screened", seed=3, n_trials=20,
                                                                             space=space))
               for _ in range(2)]
    for i in range(6):
        _run(space, None, 1, study=studies[i % 2])
    keys = _keys(studies[0])
    assert len(keys) == 6 and len(set(keys)) == 6


def test_same_seed_same_proposals(space):
    a = _keys(_run(space, make_sampler("screened", seed=5, n_trials=6, space=space), 6))
    b = _keys(_run(space, make_sampler("screened", seed=5, n_trials=6, space=space), 6))
    assert a == b


@pytest.mark.slow
def test_screening_beats_random_on_a_priced_problem(space):
    """MACs are known before training: the screening sampler should find a better front."""
    n = 14
    hv = {"screened": [], "random": []}
    runs = {name: [_run(space, make_sampler(name, seed=s, n_trials=n, space=space), n) for s in range(3)]
            for name in hv}
    pts = {k: [np.array([(-t.values[0], t.values[1]) for t in st.trials]) for st in v] for k, v in runs.items()}
    allp = np.vstack([p for v in pts.values() for p in v])
    ref = allp[pareto_mask(allp)].max(0) + 0.1 * (allp.max(0) - allp.min(0))
    for k, v in pts.items():
        hv[k] = [hypervolume(p, ref) for p in v]
    assert statistics.median(hv["screened"]) > statistics.median(hv["random"]), hv


def test_single_moves_around_the_front_and_the_baselines_no_searched_trial_beats(space):
    """Candidates hold single moves (one choice changed) of a baseline that no searched trial
    dominates, even off the front (here it is beaten by another baseline only), and none of a
    baseline a searched trial dominates. Values are (accuracy, MACs)."""
    base = space.baseline_params()
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    space.sample(draw)
    rows = [("igc-L2", base["igc-L2"], 0.9, 10.0),  # the front
            ("igc-L8", base["igc-L8"], 0.65, 12.0),  # beaten by igc-L2 alone
            (None, draw.params, 0.7, 15.0),  # the searched trial
            ("igc-M8", base["igc-M8"], 0.5, 30.0)]  # beaten by the searched trial
    sampler = ScreenedSampler(space, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for name, params, acc, macs in rows:
        study.enqueue_trial(params, user_attrs={"baseline": name} if name else {})
        trial = study.ask()
        space.sample(trial)
        study.tell(trial, [acc, macs])
    done = study.get_trials(states=(TrialState.COMPLETE,))
    cands = sampler._candidates(np.random.default_rng(0), done, study.directions,
                                {_key(t.params) for t in done})

    def single_moves(p):
        return sum(set(c) == set(p) and sum(c[k] != p[k] for k in p) == 1 for c in cands)

    assert single_moves(base["igc-L2"]) > 0 and single_moves(base["igc-L8"]) > 0
    assert single_moves(base["igc-M8"]) == 0
    assert all(c != p for c in cands for _, p, _, _ in rows)  # nothing tried is proposed again


def test_gain_2d_is_the_hypervolume_difference():
    rng = np.random.default_rng(0)
    pts = rng.random((12, 2))
    front = pts[pareto_mask(pts)]
    ref = np.array([1.1, 1.2])
    neg_acc = rng.random((4, 9)) * 1.4 - 0.2
    cost = rng.random(9) * 1.4
    gains = gain_2d(front, ref, neg_acc, cost, acc_i=0)
    for t in range(4):
        for c in range(9):
            expect = hypervolume(np.vstack([front, [neg_acc[t, c], cost[c]]]), ref) - hypervolume(front, ref)
            assert gains[t, c] == pytest.approx(expect, abs=1e-12)


def test_pruned_trials_count_with_their_accuracy_corrected_to_the_last_epoch():
    dist = {"a": CategoricalDistribution([0, 1, 2])}
    done = [create_trial(values=[0.7, 1.0], params={"a": 0}, distributions=dist,
                         user_attrs={"acc_epochs": [0.5, 0.6, 0.7]}),
            create_trial(values=[0.9, 2.0], params={"a": 1}, distributions=dist,
                         user_attrs={"acc_epochs": [0.5, 0.8, 0.9]})]
    pruned = create_trial(state=TrialState.PRUNED, params={"a": 2}, distributions=dist,
                          user_attrs={"acc_epochs": [0.55]})
    skipped = create_trial(state=TrialState.PRUNED, params={"a": 2}, distributions=dist, user_attrs={})
    rows, ys = _accuracy_targets([*done, pruned, skipped], done, acc_i=0)
    # mean gain from epoch 1 to epoch 3 over the completed trials: ((0.7-0.5) + (0.9-0.5)) / 2 = 0.3
    assert [r.params["a"] for r in rows] == [0, 1, 2]
    assert ys == pytest.approx([0.7, 0.9, 0.85])


def test_more_than_three_objectives_falls_back_to_tpe(space):
    sampler = ScreenedSampler(space, seed=0, n_startup=2)
    study = optuna.create_study(directions=["maximize"] + ["minimize"] * 3, sampler=sampler)
    for _ in range(4):
        t = study.ask()
        space.sample(t)
        a, m = _figures(space, t.params)
        study.tell(t, [a, m, m, m])
    assert len(study.trials) == 4


def _hidden_latency(params):
    """A latency that params and MACs cannot predict (a hash of the choices), in ms."""
    return 1.0 + (zlib.crc32(repr(sorted(params.items())).encode()) % 1000) / 100


def _latency_run(space, price, n=10, seed=1):
    sampler = ScreenedSampler(space, seed=seed, n_startup=4, n_candidates=32, price=price)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.set_user_attr("objectives", ["accuracy", "latency"])
    for _ in range(n):
        trial = study.ask()
        space.sample(trial)
        study.tell(trial, [_figures(space, trial.params)[0], _hidden_latency(trial.params)])
    return study


def test_a_latency_price_finds_a_better_front(space):
    """With the latency known before training (``search.study.latency_price``), the screened
    sampler finds a better accuracy/latency front than from params and MACs alone: hypervolume
    at one reference point per seed, 4 seeds of 10 trials (4 of them the shared random start)."""
    wins = []
    for seed in range(4):
        priced = _latency_run(space, lambda arch: _hidden_latency(space.params_of(arch)), seed=seed)
        blind = _latency_run(space, None, seed=seed)
        assert _keys(priced)[:4] == _keys(blind)[:4]  # the same random start-up
        assert _keys(priced) != _keys(blind)  # the two arms really proposed differently
        pts = [np.array([(-t.values[0], t.values[1]) for t in st.trials]) for st in (priced, blind)]
        allp = np.vstack(pts)
        ref = allp.max(0) + 0.1 * (allp.max(0) - allp.min(0))
        hv = [hypervolume(p[pareto_mask(p)], ref) for p in pts]
        wins.append(hv[0] > hv[1])
    assert sum(wins) >= 3, wins


def test_a_failing_price_is_dropped_with_a_warning_and_the_search_goes_on(space):
    def broken(arch):
        raise RuntimeError("no onnxruntime here")

    with pytest.warns(UserWarning, match="extra price failed"):
        failed = _latency_run(space, broken)
    assert _keys(failed) == _keys(_latency_run(space, None))  # exactly the unpriced proposals
