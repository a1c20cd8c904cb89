"""Priced candidate screening: train only the candidate with the best expected hypervolume gain.

For each new trial (after ``n_startup`` random ones):

1. Candidates: ``n_candidates`` parameter sets: a quarter mutations of the current front
   (each choice redrawn with probability 1/4 ... 1/2); a quarter single moves (one choice
   redrawn to another value) of a front member or of a baseline that no searched trial
   dominates yet, the local search around a hand-designed net that a user asks "what beats
   it?" of; half fresh random draws. Those already tried are dropped.
2. Prices, known before training: params and MACs of the built model (``evaluators.cost``),
   plus ``price(arch)`` when given (a latency predictor, say).
3. Surrogate: an extra-trees ensemble (Geurts et al. 2006) on one-hot choices + log prices,
   fitted on every evaluated trial: completed ones with their accuracy, pruned ones with the
   accuracy at the epoch they stopped plus the mean gain that completed trials made from that
   epoch to the last (so early-stopped trials still inform the model). Costs that are not a
   price (latency) get their own ensemble on log scale, fitted on every trial that measured
   them (pruned ones too: latency is measured before training).
4. Acquisition: expected hypervolume improvement (Emmerich, Giannakoglou & Naujoks 2006) over
   the completed trials' front, with the trees' individual accuracy predictions as the
   samples (Monte Carlo EHVI); ties at zero go to the highest optimistic gain.

The parameters of the chosen candidate are served through ``sample_independent`` (the
space's parameters are define-by-run). Every random draw comes from a stream seeded by
(seed, trial number, parameter), so two processes on one study never repeat each other.
With more than three objectives the hypervolume is not computed here; the sampler then
delegates to multi-objective TPE.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from . import optuna_adapter as ota
from .hv_gain import gain_2d, gain_any

__all__ = ["ScreenedSampler", "FIGURE_KEYS"]

FIGURE_KEYS = {"accuracy": "accuracy", "latency": "latency_ms", "params": "params", "macs": "macs"}


class _Chooser:
    """A stand-in trial for ``space.sample``: keeps ``parent``'s choices or redraws them."""

    def __init__(self, rng: np.random.Generator, parent: dict[str, Any] | None, p_change: float,
                 move: str | None = None):
        self.rng, self.parent, self.p_change, self.move = rng, parent or {}, p_change, move
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        old = self.parent.get(name)
        if self.move is not None and old in choices:  # a single move: only ``move`` changes
            others = [c for c in choices if c != old]
            v = others[int(self.rng.integers(len(others)))] if name == self.move and others else old
        elif old in choices and self.rng.random() >= self.p_change:
            v = old
        else:
            v = choices[int(self.rng.integers(len(choices)))]
        self.params[name] = v
        return v


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


class ScreenedSampler(optuna.samplers.BaseSampler):
    """See the module docstring. ``price(arch) -> float`` is an optional extra pre-training cost."""

    def __init__(self, space: Any, *, seed: int, n_startup: int = 6, n_candidates: int = 128,
                 price: Callable[[Any], float] | None = None, n_trees: int = 32):
        self.space, self.seed, self.n_startup = space, int(seed), int(n_startup)
        self.n_candidates, self.price, self.n_trees = int(n_candidates), price, int(n_trees)
        self._proposals: dict[int, dict[str, Any]] = {}
        self._prices: dict[tuple, list[float]] = {}
        self._refs: dict[tuple, tuple[Any, np.ndarray]] = {}
        self._layer_cost: dict[tuple, np.ndarray] = {}
        from .sampling_base import tpe

        self._fallback = tpe(seed, n_startup)

    # -- optuna interface ----------------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        if len(study.directions) > 3:
            return self._fallback.infer_relative_search_space(study, trial)
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        if len(study.directions) > 3:
            return self._fallback.sample_relative(study, trial, search_space)
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        if len(study.directions) > 3:
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        proposal = self._proposal(study, trial)
        if isinstance(param_distribution, CategoricalDistribution):
            if param_name in proposal and proposal[param_name] in param_distribution.choices:
                return proposal[param_name]
            choices = param_distribution.choices
            return choices[int(self._rng(trial.number, param_name).integers(len(choices)))]
        return optuna.samplers.RandomSampler(seed=int(self._rng(trial.number, param_name).integers(2**31))) \
            .sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._proposals.pop(ota.trial_id(trial), None)

    # -- the proposal --------------------------------------------------------------------
    def _rng(self, number: int, *parts: Any) -> np.random.Generator:
        from .sampling_base import mix_seed

        return np.random.default_rng(mix_seed(self.seed, number, *parts))

    def _proposal(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        if ota.trial_id(trial) not in self._proposals:
            self._proposals[ota.trial_id(trial)] = self._propose(study, trial)
        return self._proposals[ota.trial_id(trial)]

    def _objectives(self, study: optuna.Study) -> list[str]:
        names = study.user_attrs.get("objectives")
        if isinstance(names, list) and len(names) == len(study.directions):
            return [str(n) for n in names]
        return ["accuracy", "latency", "params", "macs"][: len(study.directions)]

    def _propose(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        searched = [t for t in trials if not t.user_attrs.get("baseline") and t.params]
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
        names = self._objectives(study)
        if len(searched) < self.n_startup or len(complete) < 2 or "accuracy" not in names:
            return {}
        rng = self._rng(trial.number, "propose")
        seen = {_key(t.params) for t in trials if t.params}
        seen |= {_key(t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.params}
        cands = self._candidates(rng, complete, study.directions, seen)
        if not cands:
            return {}
        return cands[self._best(rng, trials, complete, cands, names, study.directions)]

    def _candidates(self, rng: np.random.Generator, complete: list[FrozenTrial], directions: Any,
                    seen: set) -> list[dict[str, Any]]:
        from .pareto import dominates, pareto_mask, to_minimisation

        pts = to_minimisation([t.values for t in complete], [d.name.lower() for d in directions])
        front = [complete[i] for i in np.flatnonzero(pareto_mask(pts))]
        searched = [p for t, p in zip(complete, pts) if not t.user_attrs.get("baseline")]
        unbeaten = [t for t, p in zip(complete, pts) if t.user_attrs.get("baseline")
                    and not any(dominates(q, p) for q in searched)]
        anchors = [t for t in {t.number: t for t in front + unbeaten}.values() if t.params]
        out: list[Any] = []
        keys = set(seen)
        for i in range(self.n_candidates * 3):
            if len(out) >= self.n_candidates:
                break
            if i % 4 == 2 and anchors:
                anchor = anchors[int(rng.integers(len(anchors)))].params
                names = sorted(anchor)
                chooser = _Chooser(rng, anchor, 0.0, move=names[int(rng.integers(len(names)))])
            else:
                parent = front[int(rng.integers(len(front)))].params if i % 4 == 0 and front else None
                chooser = _Chooser(rng, parent, float(rng.uniform(0.25, 0.5)) if parent else 1.0)
            try:
                self.space.sample(chooser)
            except Exception:  # a candidate the space cannot build is no candidate
                continue
            k = _key(chooser.params)
            if k not in keys:
                keys.add(k)
                out.append(chooser.params)
        return out

    # -- pricing and the surrogate -------------------------------------------------------
    def _cost(self, arch: Any) -> np.ndarray:
        from evaluators.cost import count_macs, count_params
        from spaces.build import build_model

        model = build_model(arch, seed=0)
        return np.array([count_params(model), count_macs(model, tuple(arch.input_shape))], dtype=float)

    def _additive(self, arch: Any) -> np.ndarray:
        """(params, MACs) as a reference arch's plus per-layer differences, each layer built once.

        With the backbone's channels and strides fixed, a layer's params and MACs depend on its
        own choice only, so the sum is exact and a candidate costs no build once its layer
        choices have been seen.
        """

        skel = (arch.input_shape, arch.num_classes, repr(arch.stem), repr(arch.head),
                tuple((l.out_channels, l.stride) for l in arch.layers))
        if skel not in self._refs:
            self._refs[skel] = (arch, self._cost(arch))
        ref, base = self._refs[skel]
        total = base.copy()
        for i, layer in enumerate(arch.layers):
            if layer == ref.layers[i]:
                continue
            k = (skel, i, layer)
            if k not in self._layer_cost:
                layers = ref.layers[:i] + (layer,) + ref.layers[i + 1:]
                self._layer_cost[k] = self._cost(ref.with_layers(layers)) - base
            total += self._layer_cost[k]
        return total

    def _priced(self, params: dict[str, Any]) -> list[float]:
        k = _key(params)
        if k not in self._prices:
            arch = self.space.arch_from_params(params)
            p, m = self._additive(arch)
            row = [math.log(max(1.0, p)), math.log(max(1.0, m))]
            if self.price is not None:
                try:
                    row.append(math.log(max(1e-9, float(self.price(arch)))))
                except Exception as err:  # a price that fails is dropped, not the search
                    warnings.warn(f"screened sampler: the extra price failed ({type(err).__name__}: {err}); "
                                  "candidates are priced by params and MACs only from now on", stacklevel=2)
                    self.price = None
                    self._prices.clear()  # rows priced before carry the dropped column
            self._prices[k] = row
        return self._prices[k]

    def _price_all(self, rows: list[dict[str, Any]]) -> None:
        """Price every row before any feature matrix is built, so that all share one width
        (a price that fails part-way is dropped for all of them)."""
        had = self.price is not None
        for p in rows:
            self._priced(p)
        if had and self.price is None:
            for p in rows:
                self._priced(p)

    def _features(self, rows: list[dict[str, Any]], vocab: dict[tuple, int]) -> np.ndarray:
        x = np.zeros((len(rows), len(vocab) + 2 + (self.price is not None)))
        for i, p in enumerate(rows):
            for k, v in p.items():
                j = vocab.get((k, repr(v)))
                if j is not None:
                    x[i, j] = 1.0
            x[i, len(vocab):] = self._priced(p)
        return x

    def _forest(self, rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.ensemble import ExtraTreesRegressor

        return ExtraTreesRegressor(n_estimators=self.n_trees, min_samples_leaf=1, max_features=1.0,
                                   random_state=int(rng.integers(2**31))).fit(x, y)

    def _best(self, rng: np.random.Generator, trials: list[FrozenTrial], complete: list[FrozenTrial],
              cands: list[dict[str, Any]], names: list[str], directions: Any) -> int:
        from .pareto import pareto_mask

        acc_i = names.index("accuracy")
        rows = [t for t in trials if t.params]
        vocab: dict[tuple, int] = {}
        for p in [t.params for t in rows] + cands:
            for k, v in p.items():
                vocab.setdefault((k, repr(v)), len(vocab))
        acc_rows, acc_y = _accuracy_targets(rows, complete, acc_i)
        self._price_all(cands + [t.params for t in rows])
        x_c = self._features(cands, vocab)
        forest = self._forest(rng, self._features([t.params for t in acc_rows], vocab), np.array(acc_y))
        acc = np.stack([tree.predict(x_c) for tree in forest.estimators_])  # (trees, candidates)
        costs = []
        for j, name in enumerate(names):
            if j == acc_i:
                continue
            if name in ("params", "macs"):
                costs.append(np.exp(x_c[:, len(vocab) + (0 if name == "params" else 1)]))
                continue
            key = FIGURE_KEYS.get(name, name)
            have = [t for t in rows if isinstance(t.user_attrs.get(key), (int, float)) and t.user_attrs[key] > 0]
            if not have:
                have = [t for t in complete]
                y = np.log([max(1e-12, t.values[j]) for t in have])
            else:
                y = np.log([float(t.user_attrs[key]) for t in have])
            model = self._forest(rng, self._features([t.params for t in have], vocab), y)
            costs.append(np.exp(model.predict(x_c)))
        # minimisation form: -accuracy, costs (in the objectives' order)
        obs = np.array([[(-v if d.name.lower() == "maximize" else v) for v, d in zip(t.values, directions)]
                        for t in complete])
        front = obs[pareto_mask(obs)]
        span = np.maximum(obs.max(0) - obs.min(0), 1e-9)
        ref = obs.max(0) + 0.1 * span
        cost = np.stack(costs, axis=1)  # (candidates, costs)
        if len(names) == 2:
            gains = gain_2d(front, ref, -acc, cost[:, 0], acc_i)
        else:
            gains = gain_any(front, ref, -acc, cost, acc_i)
        ehvi = gains.mean(0)
        if ehvi.max() > 0:
            return int(np.argmax(ehvi))
        return int(np.argmax(acc.max(0)))


def _accuracy_targets(rows: list[FrozenTrial], complete: list[FrozenTrial], acc_i: int) -> tuple[list, list]:
    """(trials, accuracy) to fit on: completed ones, and pruned ones corrected to the last epoch."""
    raw = [t.user_attrs.get("acc_epochs") for t in complete]
    curves: list[list[float]] = [c for c in raw if isinstance(c, list) and c]
    n_ep = max((len(c) for c in curves), default=0)
    gain = {}
    for e in range(1, n_ep):
        diffs = [c[-1] - c[e - 1] for c in curves if len(c) == n_ep]
        if diffs:
            gain[e] = float(np.mean(diffs))
    out_t, out_y = [], []
    for t in rows:
        if t.state == TrialState.COMPLETE and t.values is not None:
            out_t.append(t)
            out_y.append(float(t.values[acc_i]))
            continue
        c = t.user_attrs.get("acc_epochs")
        if isinstance(c, list) and c and len(c) in gain:
            out_t.append(t)
            out_y.append(float(c[-1]) + gain[len(c)])
    return out_t, out_y
